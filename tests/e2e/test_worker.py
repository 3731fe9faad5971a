"""Real worker processes: side by side they invoice each ended period exactly once with gapless
numbers; killed mid-pass and restarted, they leave no half-invoice. Each of these tests has a
database of its own, set up through a real `billing serve`, so the workers see only its work."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import uuid
from collections import defaultdict

import asyncpg
from httpx import AsyncClient

from service.db.engine import Database
from tests.e2e.conftest import BILLING, printed_key, start_server, start_worker
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, new_clock

MONTHS = 10


async def _merchants_with_ended_periods(
    database_url: str, count: int
) -> tuple[str, list[uuid.UUID]]:
    """``count`` merchants with ten ended months each, in a fresh database at ``database_url``."""
    server = start_server(database_url)
    try:
        operator = Tenant(
            merchant_id=uuid.UUID(int=0), key=printed_key(server.output), key_id=uuid.UUID(int=0)
        )
        async with AsyncClient(base_url=server.base_url, timeout=60) as client:
            return await _sign_up_and_age(client, operator, count)
    finally:
        server.stop()


async def _sign_up_and_age(
    client: AsyncClient, operator: Tenant, count: int
) -> tuple[str, list[uuid.UUID]]:
    clock = await new_clock(client, operator, "2025-01-01T00:00:00+08:00")
    semaphore = asyncio.Semaphore(8)

    async def one(n: int) -> uuid.UUID:
        async with semaphore:
            tenant, _ = await signup_tenant(
                client, operator, plan="basic", test_clock_id=clock, name=f"Worker shop {n}"
            )
            return tenant.merchant_id

    merchant_ids = await asyncio.gather(*(one(n) for n in range(count)))
    # Ten months later, plus the grace window: ten ended periods each.
    await advance(client, operator, clock, "2025-11-03T00:00:00+08:00")
    return clock, list(merchant_ids)


async def _invoices(database_url: str, merchant_ids: list[uuid.UUID]) -> list[dict]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT i.merchant_id, i.kind, i.period_start, i.number, i.status,"
            " count(l.id) AS line_count"
            " FROM invoices i LEFT JOIN invoice_lines l"
            "  ON l.merchant_id = i.merchant_id AND l.invoice_id = i.id"
            " WHERE i.merchant_id = ANY($1::uuid[])"
            " GROUP BY i.merchant_id, i.id",
            merchant_ids,
        )
    finally:
        await connection.close()
    return [dict(row) for row in rows]


def _assert_each_period_once_and_numbers_gapless(invoices: list[dict], merchants: int) -> None:
    period_invoices = [i for i in invoices if i["kind"] == "period"]
    assert len(period_invoices) == merchants * MONTHS
    keys = {(i["merchant_id"], i["period_start"]) for i in period_invoices}
    assert len(keys) == len(period_invoices), "a period invoiced twice"
    assert all(i["line_count"] > 0 and i["status"] != "draft" for i in invoices)
    numbers: dict[uuid.UUID, list[int]] = defaultdict(list)
    for invoice in invoices:
        numbers[invoice["merchant_id"]].append(int(invoice["number"].rsplit("-", 1)[1]))
    for merchant_numbers in numbers.values():
        assert sorted(merchant_numbers) == list(range(1, len(merchant_numbers) + 1))
    # A merchant's period invoices are numbered in period order, whichever worker made them.
    by_period: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for invoice in sorted(period_invoices, key=lambda i: i["period_start"]):
        by_period[invoice["merchant_id"]].append(invoice)
    for merchant_invoices in by_period.values():
        in_order = [int(i["number"].rsplit("-", 1)[1]) for i in merchant_invoices]
        assert in_order == sorted(in_order), in_order
    assert len({i["number"] for i in invoices}) == len(invoices)  # unique across merchants


async def test_two_workers_at_once_invoice_each_period_exactly_once(
    fresh_database_url: str,
) -> None:
    merchants = 50
    _, merchant_ids = await _merchants_with_ended_periods(fresh_database_url, merchants)
    workers = [start_worker(fresh_database_url, "--once") for _ in range(2)]
    for worker in workers:
        output = worker.finish()
        assert worker.returncode == 0, output
    invoices = await _invoices(fresh_database_url, merchant_ids)
    _assert_each_period_once_and_numbers_gapless(invoices, merchants)
    # Each merchant: the first month's fee at once, then one invoice per ended month.
    assert len(invoices) == merchants * (MONTHS + 1)


async def test_a_worker_killed_mid_pass_leaves_whole_invoices_only(
    fresh_database_url: str,
) -> None:
    merchants = 30
    _, merchant_ids = await _merchants_with_ended_periods(fresh_database_url, merchants)
    worker = start_worker(fresh_database_url, "--once")
    deadline = time.monotonic() + 120
    watcher = await asyncpg.connect(fresh_database_url)
    try:
        while time.monotonic() < deadline:
            made = await watcher.fetchval(
                "SELECT count(*) FROM invoices WHERE merchant_id = ANY($1::uuid[])"
                " AND kind = 'period'",
                merchant_ids,
            )
            if made >= 20 or worker.poll() is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        await watcher.close()
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    partial = await _invoices(fresh_database_url, merchant_ids)
    assert all(i["line_count"] > 0 and i["status"] != "draft" for i in partial)
    assert len([i for i in partial if i["kind"] == "period"]) < merchants * MONTHS, (
        "the worker finished before it was killed; the test proves nothing"
    )
    again = start_worker(fresh_database_url, "--once")
    output = again.finish()
    assert again.returncode == 0, output
    _assert_each_period_once_and_numbers_gapless(
        await _invoices(fresh_database_url, merchant_ids), merchants
    )


async def test_worker_stops_cleanly_on_sigterm(database: Database) -> None:
    worker = start_worker(database.dsn, "--interval", "0.5")
    # Signal handlers are installed before `worker_started` is logged; wait for it (however
    # slow a loaded machine makes the start) rather than for a fixed time.
    deadline = time.monotonic() + 90
    while '"worker_started"' not in worker.output() and time.monotonic() < deadline:
        assert worker.poll() is None, worker.output()
        await asyncio.sleep(0.2)
    assert '"worker_started"' in worker.output(), worker.output()
    await asyncio.sleep(1)  # inside a pass or between passes: both must stop cleanly
    worker.process.send_signal(signal.SIGTERM)
    output = worker.finish(timeout=30)
    assert worker.returncode == 0, output
    assert '"worker_stopped"' in output


async def test_close_periods_command_dry_run_then_real(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    clock = await new_clock(client, operator, "2026-01-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, plan="advanced", test_clock_id=clock)
    await advance(client, operator, clock, "2026-03-03T00:00:00+08:00")

    def run(*args: str) -> str:
        done = subprocess.run(
            [BILLING, "close-periods", "--merchant", str(tenant.merchant_id), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "DATABASE_URL": database.dsn, "BILLING_LOG_LEVEL": "WARNING"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    dry = run("--dry-run")
    # The first month's fee (an immediate invoice), then January and February: the dry run is
    # the pass itself, rolled back.
    assert "would make 3 invoice(s)" in dry
    assert "¥900.00" in dry
    count = "SELECT count(*) FROM invoices WHERE merchant_id = $1"
    assert await database.pool.fetchval(count, tenant.merchant_id) == 0
    real = run()
    assert "made 3 invoice(s)" in real
    assert await database.pool.fetchval(count, tenant.merchant_id) == 3

    def listed(output: str) -> list[str]:
        lines = [line for line in output.splitlines() if line.startswith("  ")]
        return [re.sub(r"KB-[0-9A-Z]{4,8}-\d{6}", "(numbered when made)", line) for line in lines]

    assert listed(dry) == listed(real)
    january = "2026-01-01 00:00 – 2026-02-01 00:00 Asia/Shanghai"
    assert f"  (numbered when made)  Signed-up shop  period  {january}  ¥300.00" in listed(real)
    assert "made 0 invoice(s)" in run()
