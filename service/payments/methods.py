"""What we know of a merchant's ways to pay, kept from Stripe's events.

``customer.updated`` says which card the Stripe customer's invoices are paid with
(``invoice_settings.default_payment_method``): that is ``merchants.default_payment_method_id``,
and a merchant with one can be charged. ``payment_method.attached`` and ``detached`` say what
each card is (brand, last digits, expiry) and whether it is still saved: ``payment_methods``.
Events arrive in any order and more than once: each record keeps the ``created`` of the newest
event applied and ignores older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service.db.engine import transaction_connection
from service.db.tables import PaymentMethodRow

_LOCK_MERCHANT = """
SELECT default_payment_method_id, stripe_customer_event_created, invoice_collection
FROM merchants WHERE id = $1
FOR UPDATE
"""

_SET_DEFAULT = """
UPDATE merchants SET default_payment_method_id = $2, stripe_customer_event_created = $3
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class DefaultChange:
    """The merchant's invoice default before and after an event."""

    before: str | None
    after: str | None
    invoice_collection: str

    @property
    def is_new(self) -> bool:
        """A way to pay is on file that was not (or another one replaced it)."""
        return self.after is not None and self.after != self.before

    @property
    def is_removed(self) -> bool:
        return self.before is not None and self.after is None


async def lock_merchant(merchant_id: UUID) -> dict[str, Any] | None:
    """The merchant's payment record, its row locked until the caller's transaction ends: what
    records a default and what sends an invoice for lack of one take turns."""
    row = await transaction_connection().fetchrow(_LOCK_MERCHANT, merchant_id)
    return dict(row) if row is not None else None


async def record_default(
    merchant_id: UUID, payment_method_id: str | None, *, event_created: int
) -> DefaultChange | None:
    """The customer's invoice default as a customer event of ``event_created`` says; None when
    an event at least as new was applied already (in the caller's transaction)."""
    current = await lock_merchant(merchant_id)
    if current is None or event_created < current["stripe_customer_event_created"]:
        return None
    await transaction_connection().execute(
        _SET_DEFAULT, merchant_id, payment_method_id, event_created
    )
    return DefaultChange(
        before=current["default_payment_method_id"],
        after=payment_method_id,
        invoice_collection=current["invoice_collection"],
    )


_UPSERT = """
INSERT INTO payment_methods (merchant_id, id, type, card_brand, card_last4, card_exp_month,
    card_exp_year, is_attached, event_created, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (merchant_id, id) DO UPDATE SET
    type = EXCLUDED.type, card_brand = EXCLUDED.card_brand, card_last4 = EXCLUDED.card_last4,
    card_exp_month = EXCLUDED.card_exp_month, card_exp_year = EXCLUDED.card_exp_year,
    is_attached = EXCLUDED.is_attached, event_created = EXCLUDED.event_created,
    updated_at = EXCLUDED.updated_at
WHERE payment_methods.event_created <= EXCLUDED.event_created
RETURNING id
"""


async def record_method(
    merchant_id: UUID,
    method: dict[str, Any],
    *,
    is_attached: bool,
    event_created: int,
    at: Any,
) -> bool:
    """A card (or other way to pay) saved for the merchant, or no longer: True when this event
    was the newest about it."""
    card = method.get("card") or {}
    row = await transaction_connection().fetchval(
        _UPSERT,
        merchant_id,
        str(method["id"]),
        str(method.get("type") or "unknown")[:40],
        (card.get("display_brand") or card.get("brand") or None),
        card.get("last4"),
        card.get("exp_month"),
        card.get("exp_year"),
        is_attached,
        event_created,
        at,
    )
    return row is not None


async def described(merchant_id: UUID, payment_method_id: str | None) -> PaymentMethodRow | None:
    """What the events said of the card the merchant's invoices are paid with (None when there
    is none, or no event about it has arrived yet)."""
    if payment_method_id is None:
        return None
    return await (
        PaymentMethodRow.objects()
        .where(PaymentMethodRow.merchant_id == merchant_id)
        .where(PaymentMethodRow.id == payment_method_id)
        .first()
    )
