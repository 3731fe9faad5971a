"""Customer events: a customer edited or deleted in the Stripe dashboard. Our merchant record
is the source of truth, so an edit is only reported; a deletion is recorded and the next push
for the merchant makes a new customer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from service.db.tables import Merchant
from webhooks import records
from webhooks.handlers.lookup import data_object, is_caused_by_us

log = structlog.get_logger(__name__)


async def updated(event: dict[str, Any], *, now: datetime) -> str:
    if is_caused_by_us(event):
        return "ours"
    customer = data_object(event)
    merchant = await Merchant.objects().where(Merchant.stripe_customer_id == customer["id"]).first()
    if merchant is None:
        return "not ours"
    changed = sorted((event["data"].get("previous_attributes") or {}).keys())
    log.warning(
        "stripe_customer_edited",
        merchant_id=str(merchant.id),
        customer=customer["id"],
        fields=changed,
    )
    return f"edited in Stripe ({', '.join(changed)}); our merchant record unchanged"


async def deleted(event: dict[str, Any], *, now: datetime) -> str:
    customer = data_object(event)
    merchant = (
        await Merchant.objects()
        .where(Merchant.stripe_customer_id == customer["id"])
        .lock_rows("UPDATE")
        .first()
    )
    if merchant is None:
        return "not ours"
    merchant.stripe_customer_id = None
    merchant.stripe_customer_deleted_at = records.at(event["created"])
    await merchant.save([Merchant.stripe_customer_id, Merchant.stripe_customer_deleted_at])
    log.warning("stripe_customer_deleted", merchant_id=str(merchant.id), customer=customer["id"])
    return "deleted in Stripe; a new customer is made on the next push"


HANDLERS = {"customer.updated": updated, "customer.deleted": deleted}
