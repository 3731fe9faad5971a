"""What the Stripe sync writes about money that moved in Stripe: payments and refunds.

Both the outbox (a refund we made) and the webhook handlers (the same refund reported back, or
one made in the dashboard) write refunds here; the unique Stripe refund id makes the second
write change nothing, whichever comes first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from service.db.tables import CreditNote, Refund

# A refund's status only moves forward: pending → succeeded → failed/canceled.
REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
CREDIT_NOTE_REFUND_STATUS = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "refunded",
    "failed": "failed",
    "canceled": "failed",
}


def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe object (SDK resource or webhook JSON) as plain nested dicts."""
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()  # type: ignore[no-any-return]


def at(unix: int | None) -> datetime:
    return datetime.fromtimestamp(unix or 0, UTC)


def payment_of(stripe_invoice: Any) -> tuple[str, str | None] | None:
    """The payment intent that paid a Stripe invoice and its latest charge (None when the
    intent came as an id, not expanded), or None if it was not paid through Stripe — or if
    the invoice came without its ``payments``: an includable field, present only when the
    request expanded it (never in a webhook)."""
    invoice = as_dict(stripe_invoice)
    for entry in (invoice.get("payments") or {}).get("data") or []:
        payment = entry.get("payment") or {}
        intent = payment.get("payment_intent")
        if entry.get("status") != "paid" or not intent:
            continue
        if isinstance(intent, dict):
            charge = intent.get("latest_charge")
            charge_id = charge.get("id") if isinstance(charge, dict) else charge
            return str(intent["id"]), str(charge_id) if charge_id else None
        return str(intent), None
    return None


def payment_intent_of(stripe_invoice: Any) -> str | None:
    """The payment intent that paid a Stripe invoice, if it was paid through Stripe (and the
    invoice came with its ``payments`` expanded)."""
    found = payment_of(stripe_invoice)
    return found[0] if found else None


_INSERT_REFUND = """
INSERT INTO refunds (merchant_id, invoice_id, credit_note_id, amount_minor, currency, status,
    stripe_refund_id, origin, created_at)
VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})
ON CONFLICT (merchant_id, stripe_refund_id) DO NOTHING
RETURNING id
"""


async def record_refund(
    *,
    merchant_id: UUID,
    invoice_id: UUID,
    credit_note_id: UUID | None,
    amount_minor: int,
    currency: str,
    status: str,
    stripe_refund_id: str,
    origin: str,
    at: datetime,
) -> bool:
    """Record a Stripe refund once; later calls only move its status forward. True if new."""
    inserted = await Refund.raw(
        _INSERT_REFUND,
        merchant_id,
        invoice_id,
        credit_note_id,
        amount_minor,
        currency,
        status,
        stripe_refund_id,
        origin,
        at,
    )
    if not inserted:
        await advance_refund_status(merchant_id, stripe_refund_id, status)
    elif credit_note_id is not None:
        await _credit_note_refund(merchant_id, credit_note_id, stripe_refund_id, status)
    return bool(inserted)


async def advance_refund_status(merchant_id: UUID, stripe_refund_id: str, status: str) -> None:
    row = (
        await Refund.objects()
        .where(Refund.merchant_id == merchant_id)
        .where(Refund.stripe_refund_id == stripe_refund_id)
        .first()
    )
    if row is None or REFUND_RANK.get(status, 0) <= REFUND_RANK.get(row.status, 0):
        return
    row.status = status
    await row.save([Refund.status])
    if row.credit_note_id is not None:
        await _credit_note_refund(merchant_id, row.credit_note_id, stripe_refund_id, status)


async def _credit_note_refund(
    merchant_id: UUID, credit_note_id: UUID, stripe_refund_id: str, status: str
) -> None:
    await CreditNote.update(
        {
            CreditNote.refund_status: CREDIT_NOTE_REFUND_STATUS.get(status, "pending"),
            CreditNote.stripe_refund_id: stripe_refund_id,
        }
    ).where((CreditNote.merchant_id == merchant_id) & (CreditNote.id == credit_note_id))
