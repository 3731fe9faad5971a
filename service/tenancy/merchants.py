"""Merchants (the tenants): create, read, edit."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plans.money import CURRENCY_EXPONENTS
from service.audit import log as audit
from service.db.tables import Merchant
from service.errors import InvalidInput, NotFound
from service.payments import methods
from service.stripe_outbox import Command, enqueue
from service.tenancy.platform import is_platform
from service.tenancy.principal import Actor
from service.tenancy.schemas import MerchantOut


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown timezone {name!r}", field="timezone") from None
    return name


def check_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise InvalidInput(f"unsupported currency {code!r}", field="currency")
    return code


async def create(
    *, name: str, contact_email: str, timezone: str, currency: str, actor: Actor
) -> Merchant:
    """Create a merchant. Call inside the caller's transaction."""
    row = Merchant(
        name=name,
        contact_email=contact_email,
        timezone=check_timezone(timezone),
        currency=check_currency(currency),
    )
    await row.save()
    await enqueue(row.id, Command.CUSTOMER_CREATE, {"merchant_id": str(row.id)})
    await audit.record(
        actor,
        merchant_id=row.id,
        entity="merchant",
        entity_id=row.id,
        action="created",
        changes={
            "name": name,
            "contact_email": contact_email,
            "timezone": timezone,
            "currency": currency,
        },
    )
    return row


async def get(merchant_id: UUID) -> Merchant:
    """A customer merchant; the platform tenant is not one, so it is "not found" too."""
    row = (
        None
        if is_platform(merchant_id)
        else await Merchant.objects().where(Merchant.id == merchant_id).first()
    )
    if row is None:
        raise NotFound(f"merchant {merchant_id} not found")
    return row


async def described(row: Merchant) -> MerchantOut:
    """The merchant as the API shows it, with what Stripe said of the card its invoices are
    charged to."""
    return MerchantOut.from_row(row, await methods.described(row.id, row.default_payment_method_id))


async def update(
    merchant_id: UUID, changes: dict[str, Any], *, actor: Actor, now: datetime
) -> Merchant:
    """Apply the given field changes; ``changes`` holds only the fields the caller sent."""
    row = await get(merchant_id)
    if "timezone" in changes:
        check_timezone(changes["timezone"])
    before = {field: getattr(row, field) for field in changes}
    for field, value in changes.items():
        setattr(row, field, value)
    if changes:
        row.updated_at = now
        await row.save([*(getattr(Merchant, field) for field in changes), Merchant.updated_at])
        if {"name", "contact_email"} & changes.keys():
            await enqueue(row.id, Command.CUSTOMER_UPDATE, {"merchant_id": str(row.id)})
        await audit.record(
            actor,
            merchant_id=row.id,
            entity="merchant",
            entity_id=row.id,
            action="updated",
            changes={"before": before, "after": changes},
        )
    return row
