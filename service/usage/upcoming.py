"""The upcoming invoice: what the open period's invoice would be if it closed now, rated by
``plans`` from the usage aggregates (the same drafting the period close uses)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from plans.periods import Period, next_period, zone
from plans.rating import InvoiceDraft
from service.catalog import store as catalog_store
from service.db.tables import Subscription
from service.errors import NotFound
from service.invoicing import drafts
from service.subscriptions import clocks, lifecycle
from service.usage import periods as merchant_periods
from service.usage.aggregates import period_aggregates
from service.usage.periods import Refusal


@dataclass(frozen=True, slots=True)
class Upcoming:
    subscription: Subscription
    invoice: InvoiceDraft


async def upcoming(merchant_id: UUID, *, tax_rate: Decimal) -> Upcoming:
    sub = await lifecycle.live_subscription(merchant_id)
    if sub is None:
        raise NotFound("the merchant has no live subscription, so no upcoming invoice")
    now = (await clocks.clock_for_merchant(merchant_id)).now()
    period = lifecycle.current_period(sub)
    if now >= sub.current_period_end and not sub.cancel_at_period_end:
        # The period ended but the worker has not opened the next one yet: project that one.
        placed = (await merchant_periods.for_merchant(merchant_id)).place(now)
        if not isinstance(placed, Refusal) and placed.subscription_id == sub.id:
            tz = zone(sub.timezone)
            period = Period(placed.start.astimezone(tz), placed.end.astimezone(tz))
    usage_terms = await lifecycle.terms_of(sub, now)
    fee_terms, fee_period = None, None
    if not sub.cancel_at_period_end:
        fee_period = next_period(
            sub.billing_period,  # type: ignore[arg-type]
            period,
            sub.timezone,
            sub.billing_anchor,
        )
        fee_terms = usage_terms
        change = _scheduled_change(sub)
        if change is not None:  # a downgrade waiting for period end: the next fee is the new plan
            plan = await catalog_store.plan_version(change["plan_code"], change["plan_version"])
            fee_terms = await lifecycle.terms_of(sub, now, plan=plan, addons=change["addons"])
    invoice = drafts.draft(
        usage_terms=usage_terms,
        usage_period=period,
        aggregates=await period_aggregates(merchant_id, sub.id, period.start.astimezone(UTC)),
        fee_terms=fee_terms,
        fee_period=fee_period,
        pending=await lifecycle.pending_lines(merchant_id, sub.id),
        tax_rate=tax_rate,
        bill_usage=sub.status != "trialing",
    )
    return Upcoming(subscription=sub, invoice=invoice)


def _scheduled_change(sub: Subscription) -> dict[str, Any] | None:
    change = sub.scheduled_change
    if isinstance(change, str | bytes):
        change = msgspec.json.decode(change)
    return change or None
