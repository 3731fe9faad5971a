"""The stand-in's whole Stripe account: every resource module's operations on one store.

Each module owns one kind of object and its state machine (``customers``, ``catalog``,
``invoices``, ``invoice_items``, ``payments``, ``refunds``, ``credit_notes``, ``disputes``) on
the shared core in ``account`` (tables, ids, events, lists, ``expand``). An operation may use
another module's (paying an invoice makes a payment, a credit note may refund a charge):
they meet here, on one object under one lock.
"""

from __future__ import annotations

from webhooks.standin.account import API_VERSION, Obj, Params, no_such
from webhooks.standin.catalog import Catalog
from webhooks.standin.credit_notes import CreditNotes
from webhooks.standin.customers import Customers
from webhooks.standin.disputes import Disputes
from webhooks.standin.invoice_items import InvoiceItems
from webhooks.standin.invoices import Invoices
from webhooks.standin.payments import Payments
from webhooks.standin.refunds import Refunds

__all__ = ["API_VERSION", "Obj", "Params", "Store", "no_such"]


class Store(Customers, Catalog, Invoices, InvoiceItems, Payments, Refunds, CreditNotes, Disputes):
    """All objects of one stand-in Stripe account."""
