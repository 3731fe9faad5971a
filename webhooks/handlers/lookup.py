"""Finding our rows from Stripe objects, and the event facts every handler reads."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from service.db.tables import Invoice, Merchant, Payment
from service.stripe_outbox import outbox_id_of


class NotYet(Exception):
    """The event is about something we have not recorded yet (events come in any order):
    retried later, when the event it depends on has been processed."""


def data_object(event: dict[str, Any]) -> dict[str, Any]:
    return event["data"]["object"]  # type: ignore[no-any-return]


def is_caused_by_us(event: dict[str, Any]) -> bool:
    """An event our own outbox request caused (its idempotency key is an outbox key)."""
    request = event.get("request") or {}
    return outbox_id_of(request.get("idempotency_key")) is not None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


async def our_invoice(stripe_invoice: dict[str, Any]) -> Invoice | None:
    """Our invoice behind a Stripe invoice (by the ids we put in its metadata), locked."""
    metadata = stripe_invoice.get("metadata") or {}
    invoice_id = _uuid(metadata.get("kefu_invoice_id"))
    merchant_id = _uuid(metadata.get("kefu_merchant_id"))
    query = Invoice.objects().lock_rows("UPDATE")
    if invoice_id is not None and merchant_id is not None:
        query = query.where(Invoice.id == invoice_id).where(Invoice.merchant_id == merchant_id)
    else:
        query = query.where(Invoice.stripe_invoice_id == stripe_invoice["id"])
    return await query.first()


async def payment_for(payment_intent: str | None, charge_id: str | None) -> Payment | None:
    if payment_intent:
        found = (
            await Payment.objects()
            .where(Payment.stripe_payment_intent_id == payment_intent)
            .first()
        )
        if found is not None:
            return found
    if charge_id:
        return await Payment.objects().where(Payment.stripe_charge_id == charge_id).first()
    return None


async def is_our_customer(customer_id: str | None) -> bool:
    if not customer_id:
        return False
    return await Merchant.exists().where(Merchant.stripe_customer_id == customer_id)
