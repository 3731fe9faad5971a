"""What a batch of period closes reads beside its claims, and records after its invoices.

Every kind of fact a close needs (contracts, usage totals against what was billed, SLA reports,
waiting lines, credit balances) is read by one statement for the whole batch (`read_facts`),
so a batch of 50 periods costs a handful of round trips, not 50 of each; each invoice is then
rated alone by ``service.invoicing.close`` from these facts. Late usage (events counted after a
period was invoiced) is found by comparing the period's totals now with what was billed, and
what an invoice billed is recorded for the next comparison (`record_billed`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from plans.charges import UsageAggregate
from plans.lines import InvoiceLine
from plans.periods import Period
from plans.rating import LateUsage
from service.db.engine import transaction_connection
from service.invoicing import credit_balance
from service.subscriptions import lifecycle
from service.usage.aggregates import PeriodKey, periods_aggregates


@dataclass(frozen=True, slots=True)
class Facts:
    """What the closes of a batch read beside their claims, a statement per kind for the lot."""

    contracts: dict[UUID, list[tuple[datetime, Any]]]
    aggregates: dict[PeriodKey, dict[str, UsageAggregate]]
    usage_vs_billed: dict[tuple[UUID, UUID], list[Mapping[str, Any]]]
    sla_reports: dict[PeriodKey, Mapping[str, Any]]
    has_waiting_lines: set[tuple[UUID, UUID]]
    balances: dict[UUID, int]


def terms(facts: Facts, merchant_id: UUID, plan: Any, addons: Sequence[str], at: datetime) -> Any:
    """The plan's terms with the contract in force just before ``at`` (negotiated plans)."""
    overrides = None
    if plan.allows_overrides:
        raw = next((raw for since, raw in facts.contracts.get(merchant_id, []) if since < at), None)
        overrides = msgspec.json.decode(raw) if raw is not None else None
    return lifecycle.resolve(plan, list(addons), overrides)


# What a batch of closes reads beside the claims. Each statement filters every table by the
# merchants of the batch; the period keys are matched in Python (a few extra rows at most).
_CONTRACTS = """
SELECT merchant_id, effective_from, overrides FROM contracts
WHERE merchant_id = ANY($1::uuid[])
ORDER BY merchant_id, effective_from DESC
"""

_SLA_REPORTS = """
SELECT id, merchant_id, subscription_id, period_start, report FROM sla_reports
WHERE merchant_id = ANY($1::uuid[]) AND subscription_id = ANY($2::uuid[])
  AND period_start = ANY($3::timestamptz[]) AND invoice_id IS NULL AND credit_note_id IS NULL
"""

_HAS_WAITING_LINES = """
SELECT DISTINCT merchant_id, subscription_id FROM pending_invoice_lines
WHERE merchant_id = ANY($1::uuid[]) AND subscription_id = ANY($2::uuid[])
  AND invoice_id IS NULL
"""


async def read_facts(claims: Sequence[Mapping[str, Any]]) -> Facts:
    connection = transaction_connection()
    merchants = [claimed["merchant_id"] for claimed in claims]
    subscriptions = [claimed["subscription_id"] for claimed in claims]
    starts = [claimed["period_start"] for claimed in claims]
    keys = list(zip(merchants, subscriptions, starts, strict=True))
    contracts: dict[UUID, list[tuple[datetime, Any]]] = {}
    for row in await connection.fetch(_CONTRACTS, merchants):
        contracts.setdefault(row["merchant_id"], []).append(
            (row["effective_from"], row["overrides"])
        )
    usage_vs_billed: dict[tuple[UUID, UUID], list[Mapping[str, Any]]] = {}
    for row in await connection.fetch(_USAGE_VS_BILLED, merchants, subscriptions, max(starts)):
        usage_vs_billed.setdefault((row["merchant_id"], row["subscription_id"]), []).append(row)
    wanted = set(keys)
    sla_reports = {
        key: row
        for row in await connection.fetch(_SLA_REPORTS, merchants, subscriptions, starts)
        if (key := (row["merchant_id"], row["subscription_id"], row["period_start"])) in wanted
    }
    has_waiting_lines = {
        (row["merchant_id"], row["subscription_id"])
        for row in await connection.fetch(_HAS_WAITING_LINES, merchants, subscriptions)
    }
    return Facts(
        contracts=contracts,
        aggregates=await periods_aggregates(keys, connection=connection),
        usage_vs_billed=usage_vs_billed,
        sla_reports=sla_reports,
        has_waiting_lines=has_waiting_lines,
        balances=await credit_balance.lock_many(
            {claimed["merchant_id"]: claimed["currency"] for claimed in claims}
        ),
    )


async def waiting_lines(
    merchant_id: UUID, subscription_id: UUID
) -> list[tuple[UUID, InvoiceLine, bool]]:
    rows = await transaction_connection().fetch(
        "SELECT id, line, is_invoiced_immediately FROM pending_invoice_lines"
        " WHERE merchant_id = $1"
        " AND subscription_id = $2 AND invoice_id IS NULL ORDER BY created_at, id FOR UPDATE",
        merchant_id,
        subscription_id,
    )
    return [
        (
            row["id"],
            msgspec.json.decode(row["line"], type=InvoiceLine),
            row["is_invoiced_immediately"],
        )
        for row in rows
    ]


async def mark_lines_invoiced(merchant_id: UUID, line_ids: list[UUID], invoice_id: UUID) -> None:
    if line_ids:
        await transaction_connection().execute(
            "UPDATE pending_invoice_lines SET invoice_id = $1"
            " WHERE merchant_id = $2 AND id = ANY($3::uuid[])",
            invoice_id,
            merchant_id,
            line_ids,
        )


# What each earlier period's usage is now, beside what has been billed of it, for the
# subscriptions of a batch (each close keeps the periods before its own, ``late_usage``).
_USAGE_VS_BILLED = """
SELECT coalesce(a.merchant_id, b.merchant_id) AS merchant_id,
       coalesce(a.subscription_id, b.subscription_id) AS subscription_id,
       coalesce(a.period_start, b.period_start) AS period_start, b.period_end,
       coalesce(a.metric, b.metric) AS metric,
       a.event_count AS now_count, a.quantity AS now_quantity, a.gmv_minor AS now_gmv,
       b.event_count AS billed_count, b.quantity AS billed_quantity, b.gmv_minor AS billed_gmv
FROM (SELECT merchant_id, subscription_id, period_start, metric,
             sum(event_count)::bigint AS event_count, sum(quantity) AS quantity,
             sum(gmv_minor)::bigint AS gmv_minor
      FROM usage_aggregates
      WHERE merchant_id = ANY($1::uuid[]) AND subscription_id = ANY($2::uuid[])
        AND period_start < $3
      GROUP BY merchant_id, subscription_id, period_start, metric) a
FULL JOIN (SELECT * FROM usage_billed
           WHERE merchant_id = ANY($1::uuid[]) AND subscription_id = ANY($2::uuid[])
             AND period_start < $3) b
  ON a.merchant_id = b.merchant_id AND a.subscription_id = b.subscription_id
 AND a.period_start = b.period_start AND a.metric = b.metric
"""


def late_usage(rows: Sequence[Mapping[str, Any]], *, before: datetime, tz: Any) -> list[LateUsage]:
    """Usage of earlier, already invoiced periods (those before ``before``) that changed since
    it was billed (late events, voids): each such period becomes a LateUsage adjustment."""
    now_by_period: dict[datetime, dict[str, UsageAggregate]] = {}
    billed_by_period: dict[datetime, dict[str, UsageAggregate]] = {}
    ends: dict[datetime, datetime] = {}
    for row in rows:
        start = row["period_start"]
        if start >= before:
            continue
        if row["period_end"] is not None:
            ends[start] = row["period_end"]
            billed_by_period.setdefault(start, {})[row["metric"]] = _aggregate(
                row["billed_count"], row["billed_quantity"], row["billed_gmv"]
            )
        if row["now_count"] is not None:
            now_by_period.setdefault(start, {})[row["metric"]] = _aggregate(
                row["now_count"], row["now_quantity"], row["now_gmv"]
            )
    changed = []
    for start, end in sorted(ends.items()):  # periods never invoiced (trials) have no end here
        before_aggregates = billed_by_period.get(start, {})
        after = now_by_period.get(start, {})
        if not _same_usage(before_aggregates, after):
            changed.append(
                LateUsage(
                    period_start=start.astimezone(tz),
                    period_end=end.astimezone(tz),
                    aggregates_before=before_aggregates,
                    aggregates_after=after,
                )
            )
    return changed


def _aggregate(count: int, quantity: Any, gmv_minor: int) -> UsageAggregate:
    return UsageAggregate(count=count, quantity=Decimal(quantity), gmv_minor=gmv_minor)


def _same_usage(a: Mapping[str, UsageAggregate], b: Mapping[str, UsageAggregate]) -> bool:
    empty = UsageAggregate()
    return all(a.get(m, empty) == b.get(m, empty) for m in set(a) | set(b))


_RECORD_BILLED = """
INSERT INTO usage_billed (merchant_id, subscription_id, period_start, period_end, metric,
    event_count, quantity, gmv_minor)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::text[],
    $6::bigint[], $7::numeric[], $8::bigint[])
ON CONFLICT (merchant_id, subscription_id, period_start, metric) DO UPDATE SET
    event_count = EXCLUDED.event_count, quantity = EXCLUDED.quantity,
    gmv_minor = EXCLUDED.gmv_minor
"""


async def record_billed(
    billed: Sequence[tuple[UUID, UUID, Period, Mapping[str, UsageAggregate]]],
) -> None:
    """Remember what has now been billed of each (merchant, subscription, period)'s usage. A
    period billed with no usage gets a zero row, so usage arriving for it later shows as an
    adjustment."""
    rows = [
        (merchant_id, subscription_id, period, metric, aggregate)
        for merchant_id, subscription_id, period, aggregates in billed
        for metric, aggregate in (aggregates or {"orders": UsageAggregate()}).items()
    ]
    if not rows:
        return
    await transaction_connection().execute(
        _RECORD_BILLED,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2].start for row in rows],
        [row[2].end for row in rows],
        [row[3] for row in rows],
        [row[4].count for row in rows],
        [row[4].quantity for row in rows],
        [row[4].gmv_minor for row in rows],
    )


async def balance_after(
    merchant_id: UUID, invoice_id: UUID, draft: Any, *, balance_before: int, now: datetime
) -> None:
    """Record what the new invoice did to the credit balance; a surplus it carried in goes on
    to the open invoices (and is refunded if this was the last invoice)."""
    await credit_balance.record_invoice(
        merchant_id=merchant_id,
        invoice_id=invoice_id,
        draft=draft,
        balance_before=balance_before,
        now=now,
    )
    await credit_balance.settle(merchant_id, draft.currency, now=now)
