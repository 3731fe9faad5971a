"""Reading per-period usage totals (kept up to date at ingest) as ``plans`` aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from plans.charges import UsageAggregate
from service.db.engine import current as current_database

# Indexed by the primary key prefix; sums the few slot rows of each metric.
_PERIOD_TOTALS = """
SELECT metric, sum(event_count)::bigint AS event_count, sum(quantity) AS quantity,
       sum(gmv_minor)::bigint AS gmv_minor
FROM usage_aggregates
WHERE merchant_id = $1 AND subscription_id = $2 AND period_start = $3
GROUP BY metric
"""


async def period_aggregates(
    merchant_id: UUID,
    subscription_id: UUID,
    period_start: datetime,
    *,
    connection: asyncpg.Connection | None = None,
) -> dict[str, UsageAggregate]:
    """The period's totals per metric; on ``connection`` (a transaction's) when given."""
    reader = connection if connection is not None else current_database().pool
    rows = await reader.fetch(_PERIOD_TOTALS, merchant_id, subscription_id, period_start)
    return {
        row["metric"]: UsageAggregate(
            count=row["event_count"],
            quantity=Decimal(row["quantity"]),
            gmv_minor=row["gmv_minor"],
        )
        for row in rows
    }


# Several periods' totals in one statement (the period close's batches): each column filtered by
# its values, the few extra combinations that may match are dropped by the caller's keys.
_PERIODS_TOTALS = """
SELECT merchant_id, subscription_id, period_start, metric,
       sum(event_count)::bigint AS event_count, sum(quantity) AS quantity,
       sum(gmv_minor)::bigint AS gmv_minor
FROM usage_aggregates
WHERE merchant_id = ANY($1::uuid[]) AND subscription_id = ANY($2::uuid[])
  AND period_start = ANY($3::timestamptz[])
GROUP BY merchant_id, subscription_id, period_start, metric
"""

PeriodKey = tuple[UUID, UUID, datetime]
"""(merchant, subscription, period start)."""


async def periods_aggregates(
    keys: Sequence[PeriodKey], *, connection: asyncpg.Connection
) -> dict[PeriodKey, dict[str, UsageAggregate]]:
    """`period_aggregates` of several periods at once (a period without usage: ``{}``)."""
    found: dict[PeriodKey, dict[str, UsageAggregate]] = {key: {} for key in keys}
    if not keys:
        return found
    rows = await connection.fetch(
        _PERIODS_TOTALS,
        list({key[0] for key in keys}),
        list({key[1] for key in keys}),
        list({key[2] for key in keys}),
    )
    for row in rows:
        totals = found.get((row["merchant_id"], row["subscription_id"], row["period_start"]))
        if totals is not None:
            totals[row["metric"]] = UsageAggregate(
                count=row["event_count"],
                quantity=Decimal(row["quantity"]),
                gmv_minor=row["gmv_minor"],
            )
    return found
