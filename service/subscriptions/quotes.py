"""What a change would cost, and what the next invoice would be, without changing anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from plans.catalog import PlanVersion
from plans.periods import next_period
from plans.rating import InvoiceDraft
from service.db.tables import Subscription
from service.invoicing import drafts
from service.subscriptions import lifecycle
from service.usage.aggregates import period_aggregates


@dataclass(frozen=True, slots=True)
class ChangeQuote:
    change: lifecycle.ChangePlan
    next_invoice: InvoiceDraft


async def quote_change(
    sub: Subscription,
    *,
    new_plan: PlanVersion,
    new_addons: list[str] | None,
    when: str,
    now: datetime,
    tax_rate: Decimal,
) -> ChangeQuote:
    change = await lifecycle.plan_change(
        sub, new_plan=new_plan, new_addons=new_addons, when=when, now=now
    )
    period = lifecycle.current_period(sub)
    usage_terms = change.new_terms if change.takes_effect == "now" else change.old_terms
    pending = await lifecycle.pending_lines(sub.merchant_id, sub.id)
    if not change.is_invoiced_immediately:
        pending = [*pending, *change.proration_lines]
    following = next_period(sub.billing_period, period, sub.timezone, sub.billing_anchor)
    next_invoice = drafts.draft(
        usage_terms=usage_terms,
        usage_period=period,
        aggregates=await period_aggregates(sub.merchant_id, sub.id, sub.current_period_start),
        fee_terms=None if sub.cancel_at_period_end else change.new_terms,
        fee_period=None if sub.cancel_at_period_end else following,
        pending=pending,
        tax_rate=tax_rate,
        bill_usage=sub.status != "trialing",
    )
    return ChangeQuote(change=change, next_invoice=next_invoice)
