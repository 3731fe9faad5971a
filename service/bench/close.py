"""``billing bench close``: period close at scale, on a fresh embedded PostgreSQL (or, with
``--database-url``, an empty database of a server already running: a Citus coordinator, say).

10,000 subscriptions (all three tiers) whose March ended, with 5 million usage events in March
(and the per-period aggregates ingest keeps beside them), closed by worker processes running
side by side. Prints the setup and close times, invoices/s at each size asked for (the cost
per invoice must not grow with the number of periods), the CPU per invoice of the workers and
of PostgreSQL, the machine load before and after, and checks one invoice per period and
gapless numbers; it never asserts on time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from service.bench import machine
from service.bench.usage import bench_app

_MARCH = "2026-03-01 00:00:00+08"
_APRIL = "2026-04-01 00:00:00+08"
_MAY = "2026-05-01 00:00:00+08"
_CLOCK_AT = "2026-04-03 00:00:00+08"  # March ended and its 48 h grace window has passed

_SETUP = f"""
INSERT INTO test_clocks (id, name, frozen_time) VALUES ($1, 'bench close', '{_CLOCK_AT}');
INSERT INTO merchants (name, contact_email, test_clock_id)
SELECT 'bench shop ' || g, 'shop' || g || '@bench.cn', $1 FROM generate_series(1, $2) g;
INSERT INTO subscriptions (merchant_id, plan_code, plan_version, addons, status, currency,
    timezone, billing_period, billing_anchor, current_period_start, current_period_end,
    started_at)
SELECT m.id, (ARRAY['basic', 'advanced', 'custom'])[1 + (row_number() OVER () % 3)], 1, '{{}}',
    'active', 'CNY', 'Asia/Shanghai', 'calendar_month', '{_MARCH}', '{_APRIL}', '{_MAY}',
    '{_MARCH}'
FROM merchants m WHERE m.test_clock_id = $1;
INSERT INTO subscription_periods (merchant_id, subscription_id, period_start, period_end,
    plan_code, plan_version, fee_plan_code, fee_plan_version, status, ended_at)
SELECT s.merchant_id, s.id, '{_MARCH}', '{_APRIL}', s.plan_code, 1, s.plan_code, 1, 'ended',
    '{_APRIL}'
FROM subscriptions s JOIN merchants m ON m.id = s.merchant_id WHERE m.test_clock_id = $1;
INSERT INTO subscription_periods (merchant_id, subscription_id, period_start, period_end,
    plan_code, plan_version, fee_plan_code, fee_plan_version)
SELECT s.merchant_id, s.id, '{_APRIL}', '{_MAY}', s.plan_code, 1, s.plan_code, 1
FROM subscriptions s JOIN merchants m ON m.id = s.merchant_id WHERE m.test_clock_id = $1;
"""

# The events, and the aggregates ingest keeps beside them (8 slot rows per metric, as ingest
# spreads them). Each order carries ¥700 of GMV, so custom merchants pass the GMV threshold.
_EVENTS = f"""
INSERT INTO usage_events (merchant_id, transaction_id, subscription_id, period_start, metric,
    occurred_at, quantity, gmv_minor)
SELECT s.merchant_id, 'o-' || g, s.id, '{_MARCH}', 'orders',
    timestamptz '{_MARCH}' + (g * interval '4 seconds'), 1, 70000
FROM subscriptions s JOIN merchants m ON m.id = s.merchant_id,
     generate_series(1, $2) g
WHERE m.test_clock_id = $1
"""

_AGGREGATES = """
INSERT INTO usage_aggregates (merchant_id, subscription_id, period_start, metric, slot,
    event_count, quantity, gmv_minor)
SELECT merchant_id, subscription_id, period_start, metric,
    (hashtext(transaction_id) & 7)::smallint, count(*), sum(quantity), sum(gmv_minor)
FROM usage_events WHERE period_start = $1
GROUP BY 1, 2, 3, 4, 5
"""


@bench_app.command("close")
def close(
    subscriptions: Annotated[
        list[int],
        typer.Option(help="Subscriptions whose period ended; repeat it for a curve of sizes."),
    ] = [10_000],  # noqa: B006 - typer reads the default, nobody mutates it
    events: Annotated[int, typer.Option(help="Usage events in the period, in all.")] = 5_000_000,
    workers: Annotated[int, typer.Option(help="Worker processes side by side.")] = 2,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty database to use in place of a fresh embedded PostgreSQL (on a Citus"
            " coordinator the tables are distributed); it is migrated and left filled. One size"
            " only."
        ),
    ] = None,
) -> None:
    """Close N ended periods with M usage events in them, for each N given; print invoices/s
    at each size (a fresh database each), the CPU per invoice and the machine load."""
    if database_url is not None and len(subscriptions) > 1:
        raise typer.BadParameter(
            "a curve needs a fresh database per size: give one --subscriptions with"
            " --database-url, or leave --database-url out",
            param_hint="--subscriptions",
        )
    rates = []
    for size in subscriptions:
        figures = _run(size, events, workers, database_url)
        typer.echo(_report(size, workers, figures))
        rates.append(
            (
                size,
                figures["made"] / figures["close_seconds"],
                figures["made"] / max(figures["batches_seconds"], 1e-3),
            )
        )
    if len(rates) > 1:
        _, first, first_batches = rates[0]
        typer.echo(
            "curve: invoices/s with the process starts | first to last batch, and the cost per"
            " invoice against the first size"
        )
        for size, rate, batches in rates:
            typer.echo(
                f"  {size:>9,} periods  {rate:>7,.0f}/s ×{first / rate:.2f}"
                f"  |  {batches:>7,.0f}/s ×{first_batches / batches:.2f}"
            )


def _run(subscriptions: int, events: int, workers: int, database_url: str | None) -> dict[str, Any]:
    from service.db import embedded

    data_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-close-"))
    try:
        postmaster: int | None = None
        if database_url is None:
            admin = embedded.start(data_dir, delete_on_exit=False)
            dsn = admin.replace("/postgres?", "/bench_close?")
        else:
            dsn = database_url
        figures: dict[str, Any] = asyncio.run(_prepare(dsn, subscriptions, events))
        if database_url is None:
            postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
            _until_reaped(figures["setup_backend"])
        figures["load"] = machine.MachineLoad()
        postgres_before = _postgres_cpu(postmaster)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        processes = [_worker(dsn) for _ in range(workers)]
        for process in processes:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise typer.Exit(_fail(output))
        figures["close_seconds"] = time.perf_counter() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        figures["workers_cpu"] = (
            children.ru_utime + children.ru_stime
            - children_before.ru_utime - children_before.ru_stime
        )  # fmt: skip
        figures["postgres_cpu"] = _postgres_cpu(postmaster) - postgres_before
        figures["load"].finished()
        figures.update(asyncio.run(_check(dsn)))
        return figures
    finally:
        if database_url is None:
            embedded.discard(data_dir)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _report(subscriptions: int, workers: int, figures: dict[str, Any]) -> str:
    made = figures["made"]
    per_invoice = max(made, 1) / 1e3  # CPU seconds → ms per invoice
    postgres_cpu = figures["postgres_cpu"]
    if postgres_cpu is None:  # another server's (--database-url): not read from here
        cpu = f"workers {figures['workers_cpu'] / per_invoice:.2f} ms, PostgreSQL not measured"
    else:
        cpu = (
            f"workers {figures['workers_cpu'] / per_invoice:.2f} ms, PostgreSQL "
            f"{postgres_cpu / per_invoice:.2f} ms (2 cores: "
            f"{2 / ((figures['workers_cpu'] + postgres_cpu) / max(made, 1)):,.0f} "
            f"invoices/s if nothing else ran)"
        )
    return (
        f"database: {figures['topology']}\n"
        f"setup: {subscriptions:,} subscriptions, {figures['events']:,} usage events "
        f"in {figures['setup_seconds']:.1f} s\n"
        f"close: {made:,} period invoices by {workers} worker process(es) in "
        f"{figures['close_seconds']:.1f} s ({made / figures['close_seconds']:,.0f} invoices/s, "
        f"including process start and migration check); first to last batch "
        f"{figures['batches_seconds']:.1f} s\n"
        f"CPU per invoice: {cpu}\n"
        f"one invoice per period: {'yes' if made == subscriptions else 'NO'}; numbers unique "
        f"and gapless per merchant: {'yes' if figures['is_gapless'] else 'NO'}\n"
        + figures["load"].line()
    )


def _fail(output: str) -> int:
    typer.echo(output[-4000:], err=True)
    return 1


def _worker(dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "BILLING_LOG_LEVEL": "WARNING"}
    billing = str(Path(sys.executable).parent / "billing")
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [billing, "worker", "--once"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _until_reaped(pid: int) -> None:
    """Until the setup's backend is gone: its CPU (the 5M rows' inserts and vacuum) moves to
    the postmaster's children's times when it is reaped, and a reaping after the first sample
    counted it all as the close's (it once showed 2.8 ms of PostgreSQL CPU an invoice, more
    than two cores could give in the time)."""
    for _ in range(1000):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.01)


def _postgres_cpu(postmaster: int | None) -> float | None:
    """CPU seconds of PostgreSQL so far: the postmaster, its live processes, and (through the
    postmaster's children's times) the backends that have exited. None for a server this
    process did not start (``--database-url``)."""
    if postmaster is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile: its time moves to the postmaster's children's
            return []

    total = sum(int(value) for value in fields(postmaster)[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = fields(int(entry.name))
            if stat and int(stat[1]) == postmaster:
                total += int(stat[11]) + int(stat[12])
    return total / ticks


async def _prepare(dsn: str, subscriptions: int, events: int) -> dict[str, Any]:
    import asyncpg

    from service.catalog import store as catalog_store
    from service.db import engine as db_engine
    from service.db.migrate import migrate
    from service.settings import Settings

    started = time.perf_counter()
    await db_engine.ensure_database_exists(dsn)
    database = db_engine.connect(dsn)
    await migrate(database, shard_count=Settings.from_env().database.citus_shard_count)
    await database.start_pool(min_size=1, max_size=2)
    await catalog_store.publish_shipped()
    await database.close()
    connection = await asyncpg.connect(dsn)
    try:
        clock_id = uuid.uuid4()
        await connection.execute("SET synchronous_commit = off")  # setup only, not measured
        async with connection.transaction():
            for statement in _SETUP.split(";\n"):
                if statement.strip():
                    args = (clock_id, subscriptions) if "$2" in statement else (clock_id,)
                    await connection.execute(statement, *args)
        per_subscription = max(events // subscriptions, 1)
        await connection.execute(_EVENTS, clock_id, per_subscription)
        await connection.execute(_AGGREGATES, datetime.fromisoformat(_MARCH))
        # Vacuumed and written out as a month of ingest leaves it (autovacuum and checkpoints
        # keep up over the month): the close is measured without a vacuum of the 5M rows just
        # inserted, or a checkpoint writing them, beside it.
        await connection.execute("VACUUM (ANALYZE)")
        await connection.execute("CHECKPOINT")
        total = await connection.fetchval("SELECT count(*) FROM usage_events")
        citus = await connection.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
        )
        workers = await connection.fetchval(
            "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0" if citus else "SELECT 0"
        )
        version = await connection.fetchval("SHOW server_version")
        backend = await connection.fetchval("SELECT pg_backend_pid()")
    finally:
        await connection.close()
    topology = (
        f"PostgreSQL {version}, Citus {citus}, coordinator + {workers} workers"
        if citus
        else f"PostgreSQL {version}, one server"
    )
    return {
        "setup_seconds": time.perf_counter() - started,
        "events": int(total),
        "topology": topology,
        "setup_backend": int(backend),
    }


# Each merchant's numbers run 1..n under one prefix, and no number appears twice in the ledger.
_GAPLESS = r"""
SELECT (SELECT count(*) = count(DISTINCT number) FROM invoices)
   AND coalesce(bool_and(gapless), true)
FROM (SELECT count(*) = max(substring(number FROM '(\d+)$')::int)
             AND count(DISTINCT substring(number FROM '^KB-([^-]+)-')) = 1 AS gapless
      FROM invoices GROUP BY merchant_id) per_merchant
"""


async def _check(dsn: str) -> dict[str, Any]:
    """What the close made: invoices, whether their numbers are gapless, and the time from the
    first batch's transaction to the last one's (each Stripe push row is stamped with the start
    of the transaction that made its invoice): the close without the processes' start."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        made = await connection.fetchval("SELECT count(*) FROM invoices WHERE kind = 'period'")
        span = await connection.fetchval(
            "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM stripe_outbox"
            " WHERE command = 'invoice.push'"
        )
        return {
            "made": int(made),
            "is_gapless": bool(await connection.fetchval(_GAPLESS)),
            "batches_seconds": float(span or 0),
        }
    finally:
        await connection.close()
