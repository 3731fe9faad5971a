"""Metrics read from the database when Prometheus scrapes, so that every process's work shows.

A counter kept in memory only counts what its own process did: a reconciliation run by
``billing reconcile`` (a short CLI process), or rows removed by ``billing worker`` (which
Prometheus does not scrape), would never reach ``/metrics``. What matters beyond one process is
read here from what is stored: the latest reconciliation run, the Stripe outbox and inbox rows
still to do (parked ones above all), and the retention totals. ``/metrics`` calls `refresh`
first, which reads the database at most once per ``BILLING_METRICS_CACHE_SECONDS``; a failed
read keeps the previous figures and sets ``billing_stored_metrics_up`` to 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.db.engine import current as current_database
from service.db.engine import has_current

log = structlog.get_logger(__name__)

READ_TIMEOUT_SECONDS: Final = 2.0
"""A scrape never waits longer than this for the database; it gets the previous figures."""

_LATEST_RUN = """
WITH latest AS (
    SELECT created_at, mismatch_count, document FROM finance_reconciliations
    ORDER BY created_at DESC, id DESC LIMIT 1
)
SELECT extract(epoch FROM latest.created_at)::float8 AS at, latest.mismatch_count,
       mismatch ->> 'object' AS object, mismatch ->> 'kind' AS kind
FROM latest LEFT JOIN LATERAL jsonb_array_elements(latest.document -> 'mismatches') mismatch
    ON true
"""

# Both read only the rows still to do, through partial indexes.
_OUTBOX = """
SELECT status, count(*) AS rows,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds,
       count(*) FILTER (WHERE lease_until < now()) AS expired_leases
FROM stripe_outbox WHERE status <> 'sent' GROUP BY status
"""
_INBOX = """
SELECT status, count(*) AS rows,
       extract(epoch FROM now() - min(received_at))::float8 AS oldest_seconds
FROM stripe_inbox WHERE status <> 'processed' GROUP BY status
"""
_RETENTION = "SELECT table_name, rows_removed FROM retention_totals"
# Outgoing webhooks waiting (through the partial index of deliveries still to send), and the
# endpoints disabled after failing (few rows). Two statements: on Citus, where both tables are
# distributed, a subquery in the select list beside an aggregate is refused.
_WEBHOOKS = """
SELECT count(*) AS waiting,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_seconds
FROM outgoing_deliveries WHERE status IN ('pending', 'in_flight')
"""
_DISABLED_ENDPOINTS = """
SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL AND deleted_at IS NULL
"""

_OUTBOX_STATUSES: Final = ("pending", "in_flight", "parked")
_INBOX_STATUSES: Final = ("pending", "parked")


class StoredFacts:
    """A Prometheus collector serving the figures of the last database read."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self._is_up = False
        self._read_at = float("-inf")

    def describe(self) -> Iterable[Metric]:
        return self._build([], [], [], [])

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "billing_stored_metrics_up",
            "1 if the last read of the stored figures below succeeded, else 0 (they are older)",
        )
        up.add_metric([], 1.0 if self._is_up else 0.0)
        return [*self._families, up]

    async def refresh(self, *, max_age_seconds: float) -> None:
        """Read the database again unless the last read is younger than ``max_age_seconds``."""
        if time.monotonic() - self._read_at < max_age_seconds or not has_current():
            return
        self._read_at = time.monotonic()
        try:
            self._families = await asyncio.wait_for(self._read(), timeout=READ_TIMEOUT_SECONDS)
            self._is_up = True
        except Exception as error:  # a scrape is answered whatever the database does
            self._is_up = False
            log.warning("stored_metrics_read_failed", error=f"{type(error).__name__}: {error}")

    async def _read(self) -> list[Metric]:
        async with current_database().pool.acquire() as connection:
            run = await connection.fetch(_LATEST_RUN)
            outbox = await connection.fetch(_OUTBOX)
            inbox = await connection.fetch(_INBOX)
            retention = await connection.fetch(_RETENTION)
            webhooks = dict(await connection.fetchrow(_WEBHOOKS) or {})
            webhooks["disabled_endpoints"] = await connection.fetchval(_DISABLED_ENDPOINTS)
        return self._build(run, outbox, inbox, retention, webhooks)

    @staticmethod
    def _build(
        run: list[Any],
        outbox: list[Any],
        inbox: list[Any],
        retention: list[Any],
        webhooks: Any = None,
    ) -> list[Metric]:
        families: list[Metric] = []
        mismatches = GaugeMetricFamily(
            "billing_reconciliation_mismatches",
            "Differences between the ledger and Stripe in the latest stored reconciliation run,"
            " by object and kind (whichever process ran it)",
            labels=["object", "kind"],
        )
        by_kind: dict[tuple[str, str], int] = {}
        for row in run:
            if row["kind"] is not None:
                key = (row["object"], row["kind"])
                by_kind[key] = by_kind.get(key, 0) + 1
        for (obj, kind), count in sorted(by_kind.items()):
            mismatches.add_metric([obj, kind], float(count))
        families.append(mismatches)
        if run:
            last_at = GaugeMetricFamily(
                "billing_reconciliation_last_run_timestamp_seconds",
                "When the latest stored reconciliation run was made (Unix time)",
            )
            last_at.add_metric([], float(run[0]["at"]))
            last_count = GaugeMetricFamily(
                "billing_reconciliation_last_run_mismatch_count",
                "How many differences the latest stored reconciliation run found (0: clean)",
            )
            last_count.add_metric([], float(run[0]["mismatch_count"]))
            families += [last_at, last_count]

        outbox_rows = GaugeMetricFamily(
            "billing_stripe_outbox_rows",
            "Stripe pushes not yet sent, by status (parked ones wait for a person)",
            labels=["status"],
        )
        outbox_oldest = GaugeMetricFamily(
            "billing_stripe_outbox_oldest_unsent_seconds",
            "Age of the oldest Stripe push not yet sent, by status",
            labels=["status"],
        )
        expired = GaugeMetricFamily(
            "billing_stripe_outbox_expired_leases",
            "Pushes still in flight after their lease ran out (their worker stopped); any"
            " worker sends them again",
        )
        outbox_by_status = {row["status"]: row for row in outbox}
        expired_total = 0
        for status in _OUTBOX_STATUSES:
            row = outbox_by_status.get(status)
            outbox_rows.add_metric([status], float(row["rows"]) if row else 0.0)
            outbox_oldest.add_metric([status], float(row["oldest_seconds"]) if row else 0.0)
            expired_total += int(row["expired_leases"]) if row else 0
        expired.add_metric([], float(expired_total))
        families += [outbox_rows, outbox_oldest, expired]

        inbox_rows = GaugeMetricFamily(
            "billing_stripe_inbox_events",
            "Stripe webhook events not yet processed, by status (parked ones wait for a"
            " person: billing webhooks replay)",
            labels=["status"],
        )
        inbox_oldest = GaugeMetricFamily(
            "billing_stripe_inbox_oldest_unprocessed_seconds",
            "Age of the oldest Stripe webhook event not yet processed, by status",
            labels=["status"],
        )
        inbox_by_status = {row["status"]: row for row in inbox}
        for status in _INBOX_STATUSES:
            row = inbox_by_status.get(status)
            inbox_rows.add_metric([status], float(row["rows"]) if row else 0.0)
            inbox_oldest.add_metric([status], float(row["oldest_seconds"]) if row else 0.0)
        families += [inbox_rows, inbox_oldest]

        removed = CounterMetricFamily(
            "billing_retention_rows_removed",
            "Rows removed by retention (the worker), by table",
            labels=["table"],
        )
        for row in sorted(retention, key=lambda row: row["table_name"]):
            removed.add_metric([row["table_name"]], float(row["rows_removed"]))
        families.append(removed)

        waiting = GaugeMetricFamily(
            "billing_webhook_deliveries_waiting",
            "Outgoing webhook deliveries not yet delivered (retrying, or held by a disabled"
            " endpoint)",
        )
        waiting_oldest = GaugeMetricFamily(
            "billing_webhook_deliveries_oldest_waiting_seconds",
            "Age of the oldest outgoing webhook delivery not yet delivered",
        )
        disabled = GaugeMetricFamily(
            "billing_webhook_endpoints_disabled",
            "Webhook endpoints disabled after consecutive failures (an operator enables them)",
        )
        waiting.add_metric([], float(webhooks["waiting"]) if webhooks else 0.0)
        waiting_oldest.add_metric([], float(webhooks["oldest_seconds"]) if webhooks else 0.0)
        disabled.add_metric([], float(webhooks["disabled_endpoints"]) if webhooks else 0.0)
        families += [waiting, waiting_oldest, disabled]
        return families


STORED_FACTS: Final = StoredFacts()
REGISTRY.register(STORED_FACTS)
