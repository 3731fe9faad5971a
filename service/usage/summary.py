"""A merchant's usage per metric for a period, read from the aggregates kept at ingest (never
from raw events, so it costs the same at a thousand events or a hundred million)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from plans.charges import UsageAggregate
from service.db.engine import current as current_database
from service.errors import NotFound
from service.usage import periods as merchant_periods
from service.usage.metrics import KNOWN
from service.usage.periods import BillingPeriod, Refusal

# The slot rows of the chosen periods, summed per metric (primary-key lookups).
_TOTALS = """
SELECT metric, sum(event_count)::bigint AS event_count, sum(quantity) AS quantity,
       sum(gmv_minor)::bigint AS gmv_minor
FROM usage_aggregates
WHERE merchant_id = $1
  AND (subscription_id, period_start) IN (SELECT * FROM unnest($2::uuid[], $3::timestamptz[]))
GROUP BY metric
"""


@dataclass(frozen=True, slots=True)
class Summary:
    period: str
    currency: str
    periods: list[BillingPeriod]
    totals: dict[str, UsageAggregate]
    """Every known metric, zero when unused."""


async def summarize(merchant_id: UUID, period: str, *, now: datetime | None = None) -> Summary:
    """``period`` is ``current`` (the period open at the merchant's ``now``) or ``YYYY-MM``
    (the periods starting in that calendar month of the merchant's billing timezone)."""
    known = await merchant_periods.for_merchant(merchant_id)
    if known.currency is None:
        raise NotFound("the merchant has no subscription, so no usage", field="period")
    now = now or known.now()
    if period == "current":
        placed = known.place(now)
        if isinstance(placed, Refusal):
            raise NotFound(f"no open billing period: {placed.detail}", field="period")
        chosen = [placed]
    else:
        year, month = (int(part) for part in period.split("-"))
        chosen = known.periods_starting_in(year, month, now)
    return Summary(
        period=period,
        currency=known.currency,
        periods=chosen,
        totals=await totals(merchant_id, chosen),
    )


async def totals(merchant_id: UUID, chosen: list[BillingPeriod]) -> dict[str, UsageAggregate]:
    found = {}
    if chosen:
        rows = await current_database().pool.fetch(
            _TOTALS,
            merchant_id,
            [period.subscription_id for period in chosen],
            [period.start for period in chosen],
        )
        found = {
            row["metric"]: UsageAggregate(
                count=row["event_count"],
                quantity=Decimal(row["quantity"]),
                gmv_minor=row["gmv_minor"],
            )
            for row in rows
        }
    return {metric: found.get(metric, UsageAggregate()) for metric in KNOWN}
