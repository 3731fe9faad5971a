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
exactly the events loaded into it), and the disk the database uses is printed
(``service.bench.history``).

The server and its database come from ``service.bench.server``; the load generator speaks
HTTP/1.1 over keep-alive sockets itself and reads the CPU each side spent
(``service.bench.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
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
from service.bench.client import Connection, Cpu, cpu_text, percentile
from service.bench.history import history_disk_refusal, preload_history
from service.bench.machine import MachineLoad
from service.bench.server import UNREACHED, Server, counted, fresh_database, parent_of, signup

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
            serve = Server.start(
                dsn,
                work_dir / "server.log",
                extra_env={"BILLING_RATE_LIMIT_BASIC": UNREACHED},
                workers=options.server_workers,
            )
            try:
                key, period_start = signup(serve.base_url, serve.operator_key())
                if options.history:
                    say(f"preloading {options.history:,} events of history (COPY) ...")
                    figures.update(
                        asyncio.run(preload_history(dsn, options.history, options.history_months))
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
                figures["counted"] = counted(serve.base_url, key)
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
        f"CPU per event      batch: {cpu_text(figures['batch_cpu_us'])}; single: "
        f"{cpu_text(figures['single_cpu_us'])}",
        figures["machine"],
        f"summary read       p50 {figures['summary_p50_ms']:.2f} ms, p99 "
        f"{figures['summary_p99_ms']:.2f} ms with {in_period:,} events in the period "
        f"({options.summary_reads:,} reads; CPU per read {cpu_text(figures['summary_cpu_us'])})",
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
        f"(CPU per read {cpu_text(figures['history_summary_cpu_us'])})",
    ]


# -- PostgreSQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(options: Options, work_dir: Path) -> Iterator[str]:
    """The database the run uses: ``--database-url``'s, or one on a fresh embedded server."""
    if options.database_url is not None:
        yield options.database_url
        return
    with fresh_database(work_dir) as dsn:
        yield dsn


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
        postmasters = tuple(pid for pid in map(parent_of, backends) if pid)
    finally:
        await connection.close()
    return {"postgres": version, "topology": topology, "postmaster_pids": postmasters}


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
        cpu = Cpu(None, postmaster_pids)
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


# -- the load generator (its own process) ----------------------------------------------------


def _load_main(plan_fields: dict[str, Any], sending: Any) -> None:
    """The load generator process's entry point."""
    plan = LoadPlan(**plan_fields)
    loadgen.report(lambda: _drive(plan), sending)


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
        connection = await Connection.open(plan.host, plan.port)
        try:
            for request in share:
                status, answer = await connection.call(request)
                if status != 200:
                    raise RuntimeError(f"batch answered {status}: {answer[:300]!r}")
                accepted += msgspec.json.decode(answer, type=_BatchCounts).accepted
        finally:
            connection.close()

    cpu = Cpu(plan.server_pid, plan.postmaster_pids)
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
        connection = await Connection.open(plan.host, plan.port)
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
    figures["single_p50_ms"] = percentile(latencies, 0.50) * 1000
    figures["single_p99_ms"] = percentile(latencies, 0.99) * 1000

    # Summary reads, one after another, with every event in the period.
    before = cpu.sample()
    reads = await _time_reads(plan, _request(plan, "GET", "/v1/usage/summary?period=current"))
    figures["summary_cpu_us"] = cpu.per_event(before, max(plan.summary_reads, 1))
    figures["summary_p50_ms"] = percentile(reads, 0.50) * 1000
    figures["summary_p99_ms"] = percentile(reads, 0.99) * 1000
    if plan.history_month is not None:
        # A past month of the preloaded history, which must count exactly what was loaded.
        past = _request(plan, "GET", f"/v1/usage/summary?period={plan.history_month}")
        before = cpu.sample()
        reads = await _time_reads(plan, past)
        figures["history_summary_cpu_us"] = cpu.per_event(before, max(plan.summary_reads, 1))
        figures["history_summary_p50_ms"] = percentile(reads, 0.50) * 1000
        figures["history_summary_p99_ms"] = percentile(reads, 0.99) * 1000
        connection = await Connection.open(plan.host, plan.port)
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
            connection = await Connection.open(plan.host, plan.port)
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
    connection = await Connection.open(plan.host, plan.port)
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
