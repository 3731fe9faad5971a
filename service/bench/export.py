"""``billing bench export``: finance exports at scale, on a fresh embedded PostgreSQL.

Fills 10,000 merchants with 100,000 finalized invoices and 1,000,000 usage rows (merchant ×
period aggregates), then runs ``billing export`` in a child process for each (kind, format) and
prints its time, size and peak RSS, beside the peak RSS of the same command exporting nothing.
It never asserts on time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from service.bench.machine import MachineLoad
from service.bench.usage import bench_app

_SETUP = """
INSERT INTO merchants (name, contact_email)
SELECT '商户 bench shop ' || g, 'shop' || g || '@bench.cn' FROM generate_series(1, $1) g;
INSERT INTO subscriptions (merchant_id, plan_code, plan_version, addons, status, currency,
    timezone, billing_period, billing_anchor, current_period_start, current_period_end,
    started_at)
SELECT m.id, (ARRAY['basic', 'advanced', 'custom'])[1 + (row_number() OVER () % 3)], 1, '{}',
    'active', 'CNY', 'Asia/Shanghai', 'calendar_month', '2025-01-01 00:00+08',
    '2025-12-01 00:00+08', '2026-01-01 00:00+08', '2025-01-01 00:00+08'
FROM merchants m
"""

# $1 invoices per merchant: monthly periods from 2025-01, finalized on the 3rd of the next month.
_INVOICES = """
INSERT INTO invoices (merchant_id, subscription_id, kind, period_start, period_end, status,
    number, currency, plan_code, plan_version, subtotal_minor, discounts_minor, credits_minor,
    tax_rate, tax_minor, total_minor, amount_due_minor, amount_paid_minor, created_at,
    finalized_at, paid_at)
SELECT s.merchant_id, s.id, 'period',
    timestamptz '2025-01-01 00:00+08' + (g - 1) * interval '1 month',
    timestamptz '2025-01-01 00:00+08' + g * interval '1 month',
    CASE WHEN g % 4 = 0 THEN 'open' ELSE 'paid' END,
    'KB-2025-' || lpad(g::text, 6, '0'), 'CNY', s.plan_code, 1,
    9900 + g * 137, 0, 0, 0, 0, 9900 + g * 137, 9900 + g * 137,
    CASE WHEN g % 4 = 0 THEN 0 ELSE 9900 + g * 137 END,
    timestamptz '2025-01-03 00:00+08' + g * interval '1 month',
    timestamptz '2025-01-03 00:00+08' + g * interval '1 month',
    CASE WHEN g % 4 = 0 THEN NULL
         ELSE timestamptz '2025-01-05 00:00+08' + g * interval '1 month' END
FROM subscriptions s, generate_series(1, $1) g
"""

# $1 usage rows per merchant: one aggregate row per (merchant, period), daily periods.
_USAGE = """
INSERT INTO usage_aggregates (merchant_id, subscription_id, period_start, metric,
    event_count, quantity, gmv_minor)
SELECT s.merchant_id, s.id, timestamptz '2025-01-01 00:00+08' + (g - 1) * interval '1 day',
    'orders', g, g * 3, g * 70000
FROM subscriptions s, generate_series(1, $1) g
"""


@bench_app.command("export")
def export(
    merchants: Annotated[int, typer.Option(help="Merchants.")] = 10_000,
    invoices: Annotated[int, typer.Option(help="Finalized invoices, in all.")] = 100_000,
    usage_rows: Annotated[int, typer.Option(help="Usage rows (merchant × period).")] = 1_000_000,
    formats: Annotated[str, typer.Option(help="Comma-separated formats.")] = "csv,parquet,xlsx",
) -> None:
    """Export a year of a large tenant base; print time, size and peak RSS per export."""
    from service.db import embedded

    machine = MachineLoad()
    data_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-export-"))
    out_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-export-out-"))
    try:
        admin = embedded.start(data_dir, delete_on_exit=False)
        dsn = admin.replace("/postgres?", "/bench_export?")
        started = time.perf_counter()
        counts = asyncio.run(_prepare(dsn, merchants, invoices, usage_rows))
        typer.echo(
            f"setup: {merchants:,} merchants, {counts['invoices']:,} invoices, "
            f"{counts['usage']:,} usage rows in {time.perf_counter() - started:.1f} s"
        )
        baseline = _run_export(dsn, "invoices", "csv", "2000-01-01", "2000-01-01", out_dir)
        typer.echo(f"baseline (an empty export): peak RSS {baseline[2] / 1024:,.0f} MiB")
        for kind, rows in (("invoices", counts["invoices"]), ("usage", counts["usage"])):
            for export_format in formats.split(","):
                seconds, size, rss = _run_export(
                    dsn, kind, export_format, "2025-01-01", "2027-12-31", out_dir
                )
                typer.echo(
                    f"{kind:<9} {export_format:<8} {rows:>9,} rows  {seconds:6.1f} s  "
                    f"{size / 1_048_576:8.1f} MiB  peak RSS {rss / 1024:6.0f} MiB  "
                    f"({rows / seconds:,.0f} rows/s)"
                )
        typer.echo(machine.finished().line())
    finally:
        embedded.discard(data_dir)
        shutil.rmtree(out_dir, ignore_errors=True)


def _run_export(
    dsn: str, kind: str, export_format: str, first: str, last: str, out_dir: Path
) -> tuple[float, int, int]:
    """One ``billing export`` in a child process: (seconds, bytes, peak RSS in KiB).

    Each export runs under a fresh ``python -c`` wrapper so that ``RUSAGE_CHILDREN`` reports
    that export's peak alone."""
    out = out_dir / f"{kind}.{export_format}"
    env = {**os.environ, "DATABASE_URL": dsn, "BILLING_LOG_LEVEL": "WARNING"}
    billing = str(Path(sys.executable).parent / "billing")
    probe = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(done.returncode)"
    )
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-c", probe, billing, "export", kind, "--from", first, "--to", last,
         "--format", export_format, "--out", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        typer.echo(result.stderr[-4000:], err=True)
        raise typer.Exit(1)
    return seconds, out.stat().st_size, int(result.stdout.strip().splitlines()[-1])


async def _prepare(dsn: str, merchants: int, invoices: int, usage_rows: int) -> dict[str, int]:
    import asyncpg

    from service.catalog import store as catalog_store
    from service.db import engine as db_engine
    from service.db.migrate import migrate

    await db_engine.ensure_database_exists(dsn)
    database = db_engine.connect(dsn)
    await migrate(database)
    await database.start_pool(min_size=1, max_size=2)
    await catalog_store.publish_shipped()
    await database.close()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET synchronous_commit = off")  # setup only, not measured
        await connection.execute(_SETUP.split(";\n")[0], merchants)
        await connection.execute(_SETUP.split(";\n")[1])
        await connection.execute(_INVOICES, max(invoices // merchants, 1))
        await connection.execute(_USAGE, max(usage_rows // merchants, 1))
        await connection.execute("ANALYZE")
        return {
            "invoices": await connection.fetchval("SELECT count(*) FROM invoices"),
            "usage": await connection.fetchval("SELECT count(*) FROM usage_aggregates"),
        }
    finally:
        await connection.close()
