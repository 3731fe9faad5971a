"""The stand-in's whole Stripe account: every resource module's operations on one store.

Each module owns one kind of object and its state machine (``customers``, ``catalog``,
``invoices``, ``invoice_items``, ``payments``, ``refunds``, ``credit_notes``, ``disputes``,
``payment_methods``, ``setup_intents``, ``checkout``, ``billing_portal``) on
the shared core in ``account`` (tables, ids, events, lists, ``expand``). An operation may use
another module's (paying an invoice makes a payment, a credit note may refund a charge):
they meet here, on one object under one lock.
"""

from __future__ import annotations

from webhooks.standin.account import API_VERSION, Obj, Params, no_such
from webhooks.standin.billing_portal import BillingPortal
from webhooks.standin.catalog import Catalog
from webhooks.standin.checkout import CheckoutSessions
from webhooks.standin.credit_notes import CreditNotes
from webhooks.standin.customers import Customers
from webhooks.standin.disputes import Disputes
from webhooks.standin.invoice_items import InvoiceItems
from webhooks.standin.invoices import Invoices
from webhooks.standin.payment_methods import PaymentMethods
from webhooks.standin.payments import Payments
from webhooks.standin.refunds import Refunds
from webhooks.standin.setup_intents import SetupIntents

__all__ = ["API_VERSION", "Obj", "Params", "Store", "no_such"]


class Store(
    Customers,
    Catalog,
    Invoices,
    InvoiceItems,
    Payments,
    Refunds,
    CreditNotes,
    Disputes,
    CheckoutSessions,
    BillingPortal,
    PaymentMethods,
    SetupIntents,
):
    """All objects of one stand-in Stripe account."""
