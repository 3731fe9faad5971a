"""Reading per-period usage totals (kept up to date at ingest) as ``plans`` aggregates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

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
    merchant_id: UUID, subscription_id: UUID, period_start: datetime
) -> dict[str, UsageAggregate]:
    rows = await current_database().pool.fetch(
        _PERIOD_TOTALS, merchant_id, subscription_id, period_start
    )
    return {
        row["metric"]: UsageAggregate(
            count=row["event_count"],
            quantity=Decimal(row["quantity"]),
            gmv_minor=row["gmv_minor"],
        )
        for row in rows
    }
