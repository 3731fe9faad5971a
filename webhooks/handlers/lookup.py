"""Finding our rows from Stripe objects, and the event facts every handler reads.

Each look-up finds the merchant first (from our ids in the object's metadata, or its Stripe
customer, payment intent or charge through ``service.tenancy.stripe_owners``) and then reads
that merchant's rows only: on Citus, one shard."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from service.db.tables import Invoice, Merchant, Payment
from service.stripe_outbox import outbox_id_of
from service.tenancy import stripe_owners


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
    """Our invoice behind a Stripe invoice (by the ids we put in its metadata, else by its
    customer's merchant and its Stripe id), locked."""
    metadata = stripe_invoice.get("metadata") or {}
    invoice_id = _uuid(metadata.get("kefu_invoice_id"))
    merchant_id = _uuid(metadata.get("kefu_merchant_id"))
    query = Invoice.objects().lock_rows("UPDATE")
    if invoice_id is not None and merchant_id is not None:
        query = query.where(Invoice.merchant_id == merchant_id).where(Invoice.id == invoice_id)
    else:
        owner = await stripe_owners.merchant_of(stripe_invoice.get("customer"))
        if owner is None:
            return None
        query = query.where(Invoice.merchant_id == owner).where(
            Invoice.stripe_invoice_id == stripe_invoice["id"]
        )
    return await query.first()


async def merchant_paid_by(payment_intent: str | None, charge_id: str | None) -> UUID | None:
    """The merchant a payment intent or charge belongs to, once its payment is recorded."""
    return await stripe_owners.merchant_of(payment_intent, charge_id)


async def payment_for(
    merchant_id: UUID, payment_intent: str | None, charge_id: str | None
) -> Payment | None:
    """The merchant's payment made by this payment intent or charge."""
    if payment_intent:
        found = (
            await Payment.objects()
            .where(Payment.merchant_id == merchant_id)
            .where(Payment.stripe_payment_intent_id == payment_intent)
            .first()
        )
        if found is not None:
            return found
    if charge_id:
        return (
            await Payment.objects()
            .where(Payment.merchant_id == merchant_id)
            .where(Payment.stripe_charge_id == charge_id)
            .first()
        )
    return None


async def merchant_of_customer(customer_id: Any, *, lock: bool = False) -> Merchant | None:
    """The merchant whose Stripe customer this is now (a customer it had before is not),
    found by its id (one shard on Citus), locked with ``lock``."""
    if not isinstance(customer_id, str) or not customer_id:
        return None
    merchant_id = await stripe_owners.merchant_of(customer_id)
    if merchant_id is None:
        return None
    query = Merchant.objects().where(
        (Merchant.id == merchant_id) & (Merchant.stripe_customer_id == customer_id)
    )
    if lock:
        query = query.lock_rows("UPDATE")
    return await query.first()


async def is_our_customer(customer_id: str | None) -> bool:
    return await stripe_owners.merchant_of(customer_id) is not None
