"""Invoice lines: the one shape every charge, credit, adjustment and proration comes out as."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

import msgspec

__all__ = [
    "CHARGE_KINDS",
    "CREDIT_KINDS",
    "DISCOUNT_KINDS",
    "InvoiceLine",
    "LineKind",
]

LineKind = Literal[
    "fee",  # recurring plan fee, billed in advance for the fee period
    "usage",  # metered charge, billed in arrears for the usage period
    "addon",  # add-on fee or surcharge, billed in advance
    "minimum_true_up",  # shortfall against a minimum commitment
    "adjustment",  # late usage for an already invoiced period
    "proration",  # mid-period plan change (credit or charge)
    "discount",  # percentage discount (negative)
    "credit",  # SLA credits, credit balance applied or carried forward
]

# How the totals group the kinds: subtotal + discounts + credits = sum of all lines.
CHARGE_KINDS: Final = frozenset(
    {"fee", "usage", "addon", "minimum_true_up", "adjustment", "proration"}
)
DISCOUNT_KINDS: Final = frozenset({"discount"})
CREDIT_KINDS: Final = frozenset({"credit"})


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an invoice.

    ``quantity`` is in the charge's unit (orders, hours, or major currency units for
    percentage charges); ``unit_price`` is in major units per unit and ``rate`` a fraction
    (Decimal('0.003') is 0.30%); at most one of the two is set. ``amount_minor`` is already
    rounded, once, by `plans.money.round_half_up`.
    """

    kind: LineKind
    charge_code: str
    description: str
    quantity: Decimal
    amount_minor: int
    currency: str
    period_start: datetime
    period_end: datetime
    explanation: str
    unit_price: Decimal | None = None
    rate: Decimal | None = None
