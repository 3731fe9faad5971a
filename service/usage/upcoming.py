"""The upcoming invoices: what the period close will make next, in order, each exactly as it
will make it — the close itself run on the recorded facts and rolled back
(``service.invoicing.preview``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from service.errors import NotFound
from service.invoicing import preview
from service.subscriptions import clocks, lifecycle


@dataclass(frozen=True, slots=True)
class Upcoming:
    timezone: str
    invoices: list[preview.Drafted]


async def upcoming(merchant_id: UUID, *, tax_rate: Decimal, grace: timedelta) -> Upcoming:
    now = (await clocks.clock_for_merchant(merchant_id)).now()
    made = await preview.upcoming(merchant_id, now=now, grace=grace, tax_rate=tax_rate)
    if not made:
        raise NotFound(
            "no upcoming invoice: the merchant has no live subscription and every period "
            "has its invoice"
        )
    sub = await lifecycle.get(merchant_id, made[0].invoice.subscription_id)
    return Upcoming(timezone=sub.timezone, invoices=made)
