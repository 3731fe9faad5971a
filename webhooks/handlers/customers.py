"""Customer events: a customer edited or deleted in the Stripe dashboard. Our merchant record
is the source of truth, so an edit is only reported; a deletion is recorded and the next push
for the merchant makes a new customer. Which card the customer's invoices are paid with is
Stripe's to say: every ``customer.updated`` records it (``handlers.payment_methods``). The
merchant is found through ``service.tenancy.stripe_owners`` before its row is read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from service.db.tables import Merchant
from webhooks import records
from webhooks.handlers import payment_methods
from webhooks.handlers.lookup import data_object, is_caused_by_us, merchant_of_customer

log = structlog.get_logger(__name__)


async def updated(event: dict[str, Any], *, now: datetime) -> str:
    customer = data_object(event)
    merchant = await merchant_of_customer(customer["id"])
    if merchant is None:
        return "ours" if is_caused_by_us(event) else "not ours"
    # Which card the customer's invoices are paid with: ours to know whoever changed it (our
    # outbox after Checkout, the portal, the dashboard, a detached card).
    paying = await payment_methods.record_invoice_default(
        merchant, customer, event_created=event["created"]
    )
    if is_caused_by_us(event):
        return f"ours; {paying}"
    changed = sorted(
        set((event["data"].get("previous_attributes") or {}).keys()) - {"invoice_settings"}
    )
    if not changed:
        return paying
    log.warning(
        "stripe_customer_edited",
        merchant_id=str(merchant.id),
        customer=customer["id"],
        fields=changed,
    )
    return f"edited in Stripe ({', '.join(changed)}); our merchant record unchanged; {paying}"


async def deleted(event: dict[str, Any], *, now: datetime) -> str:
    customer = data_object(event)
    merchant = await merchant_of_customer(customer["id"], lock=True)
    if merchant is None:
        return "not ours"
    merchant.stripe_customer_id = None
    merchant.stripe_customer_deleted_at = records.at(event["created"])
    merchant.default_payment_method_id = None  # its cards went with it
    await merchant.save(
        [
            Merchant.stripe_customer_id,
            Merchant.stripe_customer_deleted_at,
            Merchant.default_payment_method_id,
        ]
    )
    log.warning("stripe_customer_deleted", merchant_id=str(merchant.id), customer=customer["id"])
    return "deleted in Stripe; a new customer is made on the next push"


HANDLERS = {"customer.updated": updated, "customer.deleted": deleted}
