"""Retention: what only grows is removed once it is old enough, a small batch at a time.

Each rule deletes at most ``batch_rows`` rows a statement, oldest first, each batch in its own
short transaction together with the running total of rows removed (``retention_totals``, read
by the API's ``/metrics`` as ``billing_retention_rows_removed_total``). The worker runs these
(`run_pass`, plain DML). Audit entries go a whole month at a time: their table is partitioned by
month, and a month that ended ``audit_months`` ago is detached and dropped by
`drop_expired_audit_months`, which is DDL and so belongs to ``billing partitions`` (run as the
migrator, e.g. by a daily CronJob), never to the worker; entries that landed in the default
partition are deleted in batches by the worker. A setting of 0 keeps that kind of row forever.
Defaults and how to change them: the README's Operations section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import structlog

from service.db import partitions
from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.settings import RetentionSettings

log = structlog.get_logger(__name__)

EVENT_MARK_DAYS = 400
"""How long the mark of a once-a-period event is kept: longer than any period or trial."""

MAX_BATCHES_PER_PASS = 20
"""Per rule and worker pass: a large backlog is worked off over several passes, so retention
never holds up the worker's other work for long."""


@dataclass(frozen=True, slots=True)
class _Rule:
    table: str
    delete: str
    """Deletes one batch (``$1``: the cutoff, ``$2``: the batch size); one row per row gone."""


# Each picks the oldest expired rows through an index, then deletes them by key (a row's key,
# never its ctid: on Citus the rows are on many shards, and these deletes, across every
# merchant, run as one statement per shard).
_RULES = {
    "idempotency_records": _Rule(
        "idempotency_records",
        "DELETE FROM idempotency_records WHERE id IN ("
        " SELECT id FROM idempotency_records WHERE created_at < $1 ORDER BY created_at LIMIT $2)"
        " RETURNING 1",
    ),
    "stripe_inbox": _Rule(
        "stripe_inbox",
        "DELETE FROM stripe_inbox WHERE id IN ("
        " SELECT id FROM stripe_inbox WHERE status = 'processed' AND processed_at < $1"
        " ORDER BY processed_at LIMIT $2)"
        " RETURNING 1",
    ),
    "stripe_outbox": _Rule(
        "stripe_outbox",
        "DELETE FROM stripe_outbox WHERE id IN ("
        " SELECT id FROM stripe_outbox WHERE status = 'sent' AND sent_at < $1"
        " ORDER BY sent_at LIMIT $2)"
        " RETURNING 1",
    ),
    "finance_reconciliations": _Rule(
        "finance_reconciliations",
        "DELETE FROM finance_reconciliations WHERE id IN ("
        " SELECT id FROM finance_reconciliations WHERE created_at < $1"
        " AND id <> (SELECT id FROM finance_reconciliations ORDER BY created_at DESC LIMIT 1)"
        " ORDER BY created_at LIMIT $2)"
        " RETURNING 1",
    ),
    # Events with no delivery still waiting; their deliveries and delivery log go with them
    # (foreign keys ON DELETE CASCADE).
    "outgoing_events": _Rule(
        "outgoing_events",
        "DELETE FROM outgoing_events WHERE (merchant_id, id) IN ("
        " SELECT e.merchant_id, e.id FROM outgoing_events e WHERE e.recorded_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM outgoing_deliveries d"
        "  WHERE d.merchant_id = e.merchant_id AND d.event_id = e.id"
        "  AND d.status IN ('pending', 'in_flight'))"
        " ORDER BY e.recorded_at LIMIT $2)"
        " RETURNING 1",
    ),
    # What once-a-period events (a usage threshold, a trial about to end) remember: kept
    # longer than any period or trial lasts, so none happens twice.
    "outgoing_event_marks": _Rule(
        "outgoing_event_marks",
        "DELETE FROM outgoing_event_marks WHERE (merchant_id, mark) IN ("
        " SELECT merchant_id, mark FROM outgoing_event_marks WHERE created_at < $1"
        " ORDER BY created_at LIMIT $2)"
        " RETURNING 1",
    ),
    "payment_setup_links": _Rule(
        "payment_setup_links",
        "DELETE FROM payment_setup_links WHERE (merchant_id, id) IN ("
        " SELECT merchant_id, id FROM payment_setup_links WHERE expires_at < $1"
        " ORDER BY expires_at LIMIT $2)"
        " RETURNING 1",
    ),
    "audit_log": _Rule(  # what sits in the default partition; whole months are dropped
        "audit_log",
        f"DELETE FROM {partitions.AUDIT_LOG.default_partition}"
        " WHERE (merchant_id, id, at) IN ("
        f" SELECT merchant_id, id, at FROM {partitions.AUDIT_LOG.default_partition}"
        " WHERE at < $1 ORDER BY at LIMIT $2)"
        " RETURNING 1",
    ),
}

_ADD_TO_TOTAL = """
INSERT INTO retention_totals AS total (table_name, rows_removed, last_removed_at)
VALUES ($1, $2, $3)
ON CONFLICT (table_name) DO UPDATE
SET rows_removed = total.rows_removed + excluded.rows_removed,
    last_removed_at = excluded.last_removed_at
"""


@dataclass
class RetentionSummary:
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


async def run_pass(settings: RetentionSettings, *, now: datetime) -> RetentionSummary:
    """Remove what has expired (up to `MAX_BATCHES_PER_PASS` batches per kind of row)."""
    summary = RetentionSummary()
    days = {
        "idempotency_records": settings.idempotency_days,
        "stripe_inbox": settings.stripe_events_days,
        "stripe_outbox": settings.outbox_sent_days,
        "finance_reconciliations": settings.reconciliations_days,
        "outgoing_events": settings.webhook_events_days,
        # 0 keeps outgoing events forever, and what once-a-period events remember with them.
        "outgoing_event_marks": settings.webhook_events_days
        and max(EVENT_MARK_DAYS, settings.webhook_events_days),
        "payment_setup_links": settings.payment_links_days,
    }
    for table, kept_days in days.items():
        if kept_days:
            await _expire(
                _RULES[table], now - timedelta(days=kept_days), settings, summary, now=now
            )
    if settings.audit_months:  # stragglers in the default partition; whole months: see below
        first_kept = partitions.MonthPartition.containing(now).preceding(settings.audit_months)
        await _expire(_RULES["audit_log"], first_kept.start, settings, summary, now=now)
    if summary.total:
        log.info("retention_pass", removed=summary.removed)
    return summary


async def _expire(
    rule: _Rule,
    cutoff: datetime,
    settings: RetentionSettings,
    summary: RetentionSummary,
    *,
    now: datetime,
) -> None:
    for _ in range(MAX_BATCHES_PER_PASS):
        async with current_database().engine.transaction():
            connection = transaction_connection()
            gone = len(await connection.fetch(rule.delete, cutoff, settings.batch_rows))
            if gone:
                await connection.execute(_ADD_TO_TOTAL, rule.table, gone, now)
        summary.removed[rule.table] = summary.removed.get(rule.table, 0) + gone
        if gone < settings.batch_rows:
            return


async def drop_expired_audit_months(
    settings: RetentionSettings, *, now: datetime
) -> RetentionSummary:
    """Detach and drop every audit month that ended ``audit_months`` ago, each in its own
    transaction with its count added to the totals (DDL: ``billing partitions`` runs it)."""
    summary = RetentionSummary()
    if not settings.audit_months:
        return summary
    first_kept = partitions.MonthPartition.containing(now).preceding(settings.audit_months)
    table = partitions.AUDIT_LOG
    for month in await partitions.months_before(table, first_kept):
        try:
            async with current_database().engine.transaction():
                connection = transaction_connection()
                gone = await partitions.drop_month(connection, table, month)
                await connection.execute(_ADD_TO_TOTAL, table.name, gone, now)
        except asyncpg.LockNotAvailableError:  # a long transaction on the table: next run
            log.warning("retention_partition_busy", partition=table.partition_name(month))
            break
        summary.removed[table.name] = summary.removed.get(table.name, 0) + gone
    if summary.total:
        log.info("retention_months_dropped", removed=summary.removed)
    return summary
