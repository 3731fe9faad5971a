"""Product and price events: what the Stripe dashboard did to the products and prices we
created for plan versions and add-ons. It is reflected in the catalog's Stripe mapping and
reported (``drift``, a warning log); our prices never change because of it — a published plan
version's price is fixed, and a new price is a new plan version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from service.db.tables import StripeCatalogMap
from webhooks import records
from webhooks.handlers.lookup import data_object, is_caused_by_us

log = structlog.get_logger(__name__)


async def _report(row: StripeCatalogMap, what: str, *, at: datetime, deactivate: bool) -> str:
    note = f"{at.isoformat()} {what}"
    if row.drift and what in row.drift:
        return f"already reported: {what}"
    row.drift = f"{row.drift}\n{note}" if row.drift else note
    columns: list[Any] = [StripeCatalogMap.drift, StripeCatalogMap.updated_at]
    if deactivate:
        row.is_active = False
        columns.append(StripeCatalogMap.is_active)
    row.updated_at = at
    await row.save(columns)
    log.warning(
        "stripe_catalog_drift",
        item=f"{row.item_kind}:{row.code}:v{row.version}",
        what=what,
    )
    return what


async def _mapped(column: Any, stripe_id: Any) -> StripeCatalogMap | None:
    """Our catalog row that ``column`` maps to ``stripe_id``, locked."""
    return await StripeCatalogMap.objects().where(column == stripe_id).lock_rows("UPDATE").first()


async def price_event(event: dict[str, Any], *, now: datetime) -> str:
    if is_caused_by_us(event):
        return "ours"
    price = data_object(event)
    at = records.at(event["created"])
    by_price = await _mapped(StripeCatalogMap.stripe_price_id, price["id"])
    if by_price is not None:
        if event["type"] == "price.deleted":
            return await _report(by_price, f"price {price['id']} deleted", at=at, deactivate=True)
        if price.get("active") is False:
            return await _report(
                by_price, f"price {price['id']} archived in Stripe", at=at, deactivate=True
            )
        return "no change to report"
    product = price.get("product")
    by_product = await _mapped(StripeCatalogMap.stripe_product_id, product)
    if by_product is None:
        return "not ours"
    amount = price.get("unit_amount")
    return await _report(
        by_product,
        f"price {price['id']} ({amount} {price.get('currency')}) made in Stripe; "
        f"we keep billing {by_product.unit_amount_minor}",
        at=at,
        deactivate=False,
    )


async def product_event(event: dict[str, Any], *, now: datetime) -> str:
    if is_caused_by_us(event):
        return "ours"
    product = data_object(event)
    at = records.at(event["created"])
    row = await _mapped(StripeCatalogMap.stripe_product_id, product["id"])
    if row is None:
        return "not ours"
    if event["type"] == "product.deleted":
        return await _report(row, f"product {product['id']} deleted", at=at, deactivate=True)
    if product.get("active") is False:
        return await _report(row, f"product {product['id']} archived", at=at, deactivate=True)
    changed = sorted((event["data"].get("previous_attributes") or {}).keys())
    if changed:
        return await _report(
            row, f"product {product['id']} edited ({', '.join(changed)})", at=at, deactivate=False
        )
    return "no change to report"


HANDLERS = {
    "price.created": price_event,
    "price.updated": price_event,
    "price.deleted": price_event,
    "product.created": product_event,
    "product.updated": product_event,
    "product.deleted": product_event,
}
