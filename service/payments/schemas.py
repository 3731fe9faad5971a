"""Request and response bodies for ways to pay and payment terms."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from service.db.tables import PaymentMethodRow
from service.wire import Input, Output, pattern

PageUrl = Annotated[
    str,
    pattern(
        r"^https?://[^\s]+$",
        "an absolute http:// or https:// address, such as https://shop.example/billing/done",
        max_length=2048,
        examples=["https://app.kefu.example/billing/card-saved"],
    ),
]

Collection = Literal["automatic", "send_invoice"]


class PaymentTermsIn(Input):
    """How the merchant's invoices are collected. ``automatic``: charged to the card saved
    for it, sent (with a payment link) until one is saved. ``send_invoice``: always sent, paid
    by bank transfer or on the payment link (negotiated contracts only)."""

    collection: Collection = "automatic"
    days_until_due: Annotated[int, msgspec.Meta(ge=1, le=365)] | None = None
    """Days a sent invoice is due after it is issued; omitted: the plan's (14 on the shipped
    plans)."""


class PaymentTermsOut(Output):
    collection: str
    days_until_due: int | None
    """None: the plan's."""


class PaymentMethodOut(Output):
    """The card (or other way to pay) the merchant's invoices are charged to. Its details are
    filled in once Stripe's ``payment_method.attached`` event has arrived."""

    id: str
    type: str | None
    card_brand: str | None
    card_last4: str | None
    card_exp_month: int | None
    card_exp_year: int | None

    @classmethod
    def from_row(cls, method_id: str, row: PaymentMethodRow | None) -> PaymentMethodOut:
        if row is None:
            return cls(
                id=method_id,
                type=None,
                card_brand=None,
                card_last4=None,
                card_exp_month=None,
                card_exp_year=None,
            )
        return cls(
            id=method_id,
            type=row.type,
            card_brand=row.card_brand,
            card_last4=row.card_last4,
            card_exp_month=row.card_exp_month,
            card_exp_year=row.card_exp_year,
        )


class PaymentSetupRequest(Input):
    """Where Stripe's Checkout page sends the merchant back; omitted: the configured pages."""

    success_url: PageUrl | None = None
    cancel_url: PageUrl | None = None


class PaymentSetupOut(Output):
    url: str
    """Open it in the merchant's browser: it goes to a Stripe Checkout page where the merchant
    saves a card. No API key needed; shown this once."""
    expires_at: datetime
    """The link works until then, or until a way to pay is saved through it."""


class BillingPortalOut(Output):
    url: str
    """A Stripe customer-portal session: cards, invoices and receipts. Open it at once (it
    lasts a few minutes); ask again for a new one."""
