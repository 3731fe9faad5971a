# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""``/metrics`` shows what other processes did: a reconciliation run by ``billing reconcile``
(another process), outbox and inbox rows waiting for a person, rows the worker's retention
removed. They are read from the database at scrape time, not counted in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service import retention
from service.app import create_app
from service.db.engine import Database
from service.db.tables import Invoice
from service.settings import RetentionSettings, Settings
from tests.integration.conftest import Tenant, make_tenant
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_settings,
    sync,
)
from tests.integration.test_finance_reconcile import _invoiced

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(settings: Settings) -> Samples:
    """Every sample of ``/metrics`` of a fresh app (no cached figures), by name and labels."""
    app = create_app(dataclasses.replace(settings, metrics_cache_seconds=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_a_reconciliation_run_by_the_cli_shows_on_the_apis_metrics(
    stripe_client: httpx.AsyncClient,
    operator: Tenant,
    sync: Sync,
    stripe_settings: Settings,
    database_dsn: str,
) -> None:
    tenant = await _invoiced(stripe_client, operator, sync, "basic")
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()
    invoice = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id).first()
    assert invoice is not None
    voided = await stripe_client.post(f"/v1/invoices/{invoice.id}/void", headers=operator.headers)
    assert voided.status_code == 200  # voided here, still open in Stripe: one mismatch

    env = {
        **os.environ,
        "DATABASE_URL": database_dsn,
        "BILLING_LOG_LEVEL": "WARNING",
        "STRIPE_API_KEY": "sk_test_standin",
        "STRIPE_API_BASE": sync.standin.base_url,
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "billing"),
        *("reconcile", "--from", "2026-03-01", "--to", "2027-12-31"),
        *("--merchant", str(tenant.merchant_id)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output

    samples = await _scrape(stripe_settings)
    mismatch = (
        "billing_reconciliation_mismatches",
        (("kind", "voided_here_only"), ("object", "invoice")),
    )
    assert samples[mismatch] == 1.0
    assert samples[("billing_reconciliation_last_run_mismatch_count", ())] == 1.0
    last_run = samples[("billing_reconciliation_last_run_timestamp_seconds", ())]
    assert abs(last_run - datetime.now(UTC).timestamp()) < 600
    assert samples[("billing_stored_metrics_up", ())] == 1.0


async def test_waiting_stripe_work_and_retention_come_from_the_database(
    database: Database, settings: Settings
) -> None:
    before = await _scrape(settings)
    tenant = await make_tenant("Metrics shop")
    tag = uuid.uuid4().hex[:12]
    now = datetime.now(UTC)
    pool = database.pool
    await pool.execute(  # a push Stripe refused, waiting for a person
        "INSERT INTO stripe_outbox (merchant_id, stream, command, payload, idempotency_key,"
        " status) VALUES ($1, $2, 'customer.update', '{}'::jsonb, $3, 'parked')",
        tenant.merchant_id,
        str(tenant.merchant_id),
        f"metrics-{tag}-parked",
    )
    await pool.execute(  # claimed by a worker that stopped: its lease ran out
        "INSERT INTO stripe_outbox (merchant_id, stream, command, payload, idempotency_key,"
        " status, lease_until) VALUES ($1, $2, 'customer.update', '{}'::jsonb, $3, 'in_flight',"
        " $4)",
        tenant.merchant_id,
        f"other-stream-{tag}",
        f"metrics-{tag}-lost",
        now - timedelta(minutes=1),
    )
    await pool.execute(
        "INSERT INTO stripe_inbox (event_id, event_type, event_created, payload, status)"
        " VALUES ($1, 'invoice.paid', 0, '{}'::jsonb, 'parked')",
        f"evt_metrics_{tag}",
    )
    await pool.execute(
        "INSERT INTO idempotency_records (scope, idempotency_key, request_hash, status_code,"
        " response_body, created_at) VALUES ($1, 'k', 'h', 200, '{}'::jsonb, $2)",
        f"metrics-{tag}",
        now - timedelta(days=30),
    )
    # The worker's retention pass: another process in production; nothing here counts it.
    removed = await retention.run_pass(RetentionSettings(audit_months=0), now=now)
    assert removed.removed["idempotency_records"] >= 1

    after = await _scrape(settings)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("billing_stripe_outbox_rows", status="parked") == 1
    assert grew("billing_stripe_outbox_rows", status="in_flight") == 1
    assert grew("billing_stripe_outbox_expired_leases") == 1
    assert grew("billing_stripe_inbox_events", status="parked") == 1
    assert (
        grew("billing_retention_rows_removed_total", table="idempotency_records")
        == removed.removed["idempotency_records"]
    )
    await pool.execute("DELETE FROM stripe_outbox WHERE idempotency_key LIKE $1", f"metrics-{tag}%")
    await pool.execute("DELETE FROM stripe_inbox WHERE event_id = $1", f"evt_metrics_{tag}")
