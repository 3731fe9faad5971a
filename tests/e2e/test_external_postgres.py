"""Production on an external PostgreSQL, as the README's Deploy section says to run it: the roles
of ``infra/sql/roles.sql``, ``billing migrate`` as the migrator (the only DDL), two API
processes and three workers as the runtime role, TLS to the database, and the restore drill
(``pg_dump``, a fresh database, ``pg_restore``: the ledger comes back equal).

The database is Debian's PostgreSQL (see ``cluster_helpers``): its ``pg_dump`` matches its
server, which the embedded PostgreSQL 18 would not."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from tests.e2e.cluster_helpers import MIGRATOR, RUNTIME, Cluster, start_cluster, start_pgbouncer
from tests.e2e.conftest import (
    BILLING,
    ServerProcess,
    WorkerProcess,
    migrate,
    start_server,
    start_worker,
)

# Production mode, as deployed; test clocks allowed so a month passes in a second (the compose
# test and the gauntlet do the same); small pools: 2 APIs × 5 + 3 workers × 5 connections.
# Its own PostgreSQL (not TEST_DATABASE_URL's): not run again on the Citus cluster.
pytestmark = pytest.mark.own_postgres

PRODUCTION = {
    "BILLING_ENV": "production",
    "BILLING_ALLOW_TEST_CLOCKS": "1",
    "BILLING_DB_POOL_MAX": "5",
    "BILLING_LOG_LEVEL": "WARNING",
}
MERCHANTS = 6
EVENTS_PER_MERCHANT = 30


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = start_cluster()
    yield running
    running.stop()


def billing(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [BILLING, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, **PRODUCTION, **env},
        check=False,
    )


def operator_key(database_url: str, **env: str) -> str:
    """The way in on a new deployment: `billing keys create`, as the runtime role."""
    made = billing(
        "keys", "create", "--role", "operator", "--all-scopes", database_url=database_url, **env
    )
    assert made.returncode == 0, made.stderr
    match = re.search(r"^(kbo_\S+)$", made.stdout, re.MULTILINE)
    assert match, made.stdout
    return match.group(1)


def said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What a command said on stderr to the person, its JSON log lines aside."""
    assert "Traceback" not in done.stderr
    return [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]


def new_database(cluster: Cluster) -> str:
    name = f"billing_{uuid.uuid4().hex[:8]}"
    cluster.create_billing_database(name)
    return name


# -- the roles ---------------------------------------------------------------------------------


async def test_the_runtime_role_cannot_create_alter_drop_or_truncate_a_table(
    cluster: Cluster,
) -> None:
    name = new_database(cluster)
    migrate(cluster.url(MIGRATOR, name))
    runtime = await asyncpg.connect(cluster.url(RUNTIME, name))
    try:
        await runtime.execute("SELECT count(*) FROM invoices")  # it reads and writes rows
        refused = [
            "CREATE TABLE runtime_made (id int)",
            "CREATE TABLE pg_temp.runtime_made (id int)",
            "CREATE SCHEMA runtime_schema",
            "DROP TABLE invoices",
            "ALTER TABLE invoices ADD COLUMN runtime_added int",
            "TRUNCATE usage_events",
            "CREATE INDEX runtime_idx ON invoices (created_at)",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await runtime.execute(statement)
    finally:
        await runtime.close()
    assert cluster.psql(name, sql="SELECT to_regclass('runtime_made') IS NULL") == "t\n"


def test_migrate_as_the_runtime_role_is_refused_in_one_line(cluster: Cluster) -> None:
    name = new_database(cluster)
    done = billing("migrate", database_url=cluster.url(RUNTIME, name))
    assert done.returncode == 1
    (line,) = said(done)
    assert line.startswith("error: ")
    assert "permission denied" in line
    assert "need the migrator role" in line


def test_serve_and_worker_refuse_an_unmigrated_database_and_say_to_run_migrate(
    cluster: Cluster,
) -> None:
    name = new_database(cluster)
    for command in (["serve"], ["worker", "--once"]):
        done = billing(*command, database_url=cluster.url(RUNTIME, name))
        assert done.returncode == 1, done.stdout
        (line,) = said(done)
        assert line.startswith("error: the database has no billing schema yet")
        assert "run `billing migrate`" in line
    tables = cluster.psql(name, sql="SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == "0\n"


def test_serve_and_worker_leave_a_missing_partition_to_billing_partitions(
    cluster: Cluster,
) -> None:
    """Partition upkeep is DDL: the migrator's `billing partitions` (a CronJob) makes a missing
    month, never `serve` or `worker` (as the runtime role they could not)."""
    name = new_database(cluster)
    migrate(cluster.url(MIGRATOR, name))
    furthest = cluster.psql(
        name,
        sql="SELECT max(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'usage_events'::regclass AND c.relname <> 'usage_events_default'",
    ).strip()
    cluster.psql(name, sql=f"ALTER TABLE usage_events DETACH PARTITION {furthest}")
    cluster.psql(name, sql=f"DROP TABLE {furthest}")
    runtime = cluster.url(RUNTIME, name)
    worked = billing("worker", "--once", database_url=runtime)
    assert worked.returncode == 0, worked.stderr
    server = start_server(runtime, extra_env=PRODUCTION)
    assert server.stop() == 0
    exists = f"SELECT to_regclass('{furthest}') IS NOT NULL"
    assert cluster.psql(name, sql=exists) == "f\n"

    kept = billing("partitions", database_url=cluster.url(MIGRATOR, name))
    assert kept.returncode == 0, kept.stderr
    assert "partitions made: 1" in kept.stdout
    assert cluster.psql(name, sql=exists) == "t\n"


# -- two APIs, three workers ---------------------------------------------------------------------


@dataclass
class Month:
    """What the 2 API × 3 worker run sent and what the database holds after it."""

    database: str
    sent: dict[str, set[str]] = field(default_factory=dict)
    """merchant id -> the transaction ids sent (each to both APIs, some twice)."""
    worker_outputs: list[str] = field(default_factory=list)
    worker_exit_codes: list[int | None] = field(default_factory=list)
    apis_answered: set[str] = field(default_factory=set)


async def _send_usage(apis: list[httpx.AsyncClient], key: str, merchant: str) -> set[str]:
    """Every event to both APIs at once; every third one again, as a batch to the other API."""
    headers = {"Authorization": f"Bearer {key}"}
    sent = set()
    for n in range(EVENTS_PER_MERCHANT):
        event = {
            "transaction_id": f"order-{merchant[:8]}-{n:04d}",
            "metric": "orders",
            "occurred_at": f"2026-09-{10 + n % 5:02d}T10:{n % 60:02d}:00+08:00",
            "quantity": 1,
            "gmv": {"amount_minor": 1000 + n, "currency": "CNY"},
        }
        answers = await asyncio.gather(
            *(api.post("/v1/usage/events", json=event, headers=headers) for api in apis)
        )
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        if n % 3 == 0:
            again = await apis[(n + 1) % 2].post(
                "/v1/usage/events/batch", json={"events": [event]}, headers=headers
            )
            assert again.status_code == 200, again.text
            assert again.json()["duplicates"] == 1
        sent.add(event["transaction_id"])
    return sent


async def _sign_up_on_clock(
    api: httpx.AsyncClient, operator: dict[str, str], clock_id: str, shop: str, key: str
) -> tuple[str, str]:
    """A basic merchant without a trial on the test clock: its id and its API key."""
    signed = await api.post(
        "/v1/signup",
        json={
            "merchant": {"name": shop, "contact_email": "o@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
            "test_clock_id": clock_id,
        },
        headers={**operator, "Idempotency-Key": key},
    )
    assert signed.status_code == 201, signed.text
    body = signed.json()
    return body["merchant"]["id"], body["api_key"]["key"]


async def _until_invoiced(database_url: str, merchants: int) -> None:
    """Wait (bounded) until the workers have made every September period invoice."""
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(600):
            made = await connection.fetchval(
                "SELECT count(*) FROM invoices WHERE kind = 'period'"
                " AND period_start = '2026-09-01T00:00:00+08:00' AND status <> 'draft'"
            )
            if made >= merchants:
                await asyncio.sleep(2)  # any second invoice would show by now
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise AssertionError("the workers did not invoice September within a minute")


@pytest.fixture(scope="module")
async def month(cluster: Cluster) -> Month:
    """One month of a deployment: migrate, 2 `billing serve` + 3 `billing worker` as the
    runtime role, signups and usage through both APIs, the month closed by the workers."""
    name = new_database(cluster)
    migrate(cluster.url(MIGRATOR, name))
    runtime_url = cluster.url(RUNTIME, name)
    key = operator_key(runtime_url)
    operator = {"Authorization": f"Bearer {key}"}
    servers: list[ServerProcess] = []
    workers: list[WorkerProcess] = []
    result = Month(database=name)
    try:
        workers = [
            start_worker(runtime_url, "--interval", "0.3", extra_env=PRODUCTION) for _ in range(3)
        ]
        servers = list(
            await asyncio.gather(
                *(asyncio.to_thread(start_server, runtime_url, extra_env=PRODUCTION) for _ in "12")
            )
        )
        apis = [httpx.AsyncClient(base_url=s.base_url, timeout=60) for s in servers]
        try:
            clock = await apis[0].post(
                "/v1/test-clocks",
                json={"frozen_time": "2026-09-01T00:00:00+08:00", "name": "two-by-three"},
                headers=operator,
            )
            assert clock.status_code == 201, clock.text
            clock_id = clock.json()["id"]

            async def sign_up(n: int) -> tuple[str, str]:  # alternately through each API
                return await _sign_up_on_clock(
                    apis[n % 2], operator, clock_id, f"双进程商店 {n}", f"signup-{name}-{n}"
                )

            merchants = await asyncio.gather(*(sign_up(n) for n in range(MERCHANTS)))
            moved = await apis[1].post(
                f"/v1/test-clocks/{clock_id}/advance",
                json={"frozen_time": "2026-09-16T00:00:00+08:00"},
                headers=operator,
            )
            assert moved.status_code == 200, moved.text
            sent = await asyncio.gather(*(_send_usage(apis, k, m) for m, k in merchants))
            result.sent = {m: s for (m, _), s in zip(merchants, sent, strict=True)}
            moved = await apis[0].post(
                f"/v1/test-clocks/{clock_id}/advance",
                json={"frozen_time": "2026-10-03T00:00:00+08:00"},
                headers=operator,
            )
            assert moved.status_code == 200, moved.text
            await _until_invoiced(cluster.url("postgres", name), MERCHANTS)
            for api in apis:
                if (await api.get("/readyz")).status_code == 200:
                    result.apis_answered.add(str(api.base_url))
        finally:
            for api in apis:
                await api.aclose()
    finally:
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            result.worker_outputs.append(worker.finish(timeout=60))
            result.worker_exit_codes.append(worker.returncode)
        for server in servers:
            server.stop()
    return result


async def test_two_apis_and_three_workers_invoice_each_period_once_and_count_each_event_once(
    cluster: Cluster, month: Month
) -> None:
    assert len(month.apis_answered) == 2
    assert month.worker_exit_codes == [0, 0, 0], month.worker_outputs
    assert all("worker_pass_failed" not in output for output in month.worker_outputs)
    connection = await asyncpg.connect(cluster.url("postgres", month.database))
    try:
        invoices = await connection.fetch(
            "SELECT merchant_id::text AS merchant, kind, period_start, number FROM invoices"
        )
        counted = await connection.fetch(
            "SELECT merchant_id::text AS merchant, count(*) AS events, sum(quantity) AS orders"
            " FROM usage_events GROUP BY merchant_id"
        )
        billed = await connection.fetch(
            "SELECT i.merchant_id::text AS merchant, l.explanation FROM invoice_lines l"
            " JOIN invoices i ON i.merchant_id = l.merchant_id AND i.id = l.invoice_id"
            " WHERE i.kind = 'period' AND l.charge_code = 'orders'"
        )
    finally:
        await connection.close()
    period = [(i["merchant"], i["period_start"]) for i in invoices if i["kind"] == "period"]
    print(
        f"\n2 APIs x 3 workers: {sum(len(s) for s in month.sent.values())} events sent to both"
        f" APIs, {sum(r['events'] for r in counted)} stored; {len(period)} September invoices"
        f" for {len(month.sent)} merchants"
    )
    assert len(period) == MERCHANTS, "one September invoice per merchant"
    assert len(set(period)) == len(period), "a period invoiced twice"
    for merchant in month.sent:  # gapless numbers: the first-period fee, then September
        numbers = sorted(
            int(i["number"].rsplit("-", 1)[1]) for i in invoices if i["merchant"] == merchant
        )
        assert numbers == list(range(1, len(numbers) + 1))
    assert {row["merchant"]: row["events"] for row in counted} == {
        merchant: len(sent) for merchant, sent in month.sent.items()
    }
    # What each September invoice says it counted (basic: 3,000 orders included).
    assert {row["merchant"]: row["explanation"] for row in billed} == {
        merchant: f"{len(sent)} orders: within 3,000 included"
        for merchant, sent in month.sent.items()
    }


# -- the restore drill -------------------------------------------------------------------------

_LEDGER = {
    "invoices": "SELECT merchant_id, number, kind, status, period_start, total_minor"
    " FROM invoices ORDER BY merchant_id, number",
    "invoice_lines": "SELECT merchant_id, invoice_id, position, charge_code, quantity,"
    " amount_minor FROM invoice_lines ORDER BY merchant_id, invoice_id, position",
    "usage totals": "SELECT merchant_id, metric, count(*), sum(quantity), sum(gmv_minor)"
    " FROM usage_events GROUP BY merchant_id, metric ORDER BY merchant_id, metric",
    "outbox": "SELECT merchant_id, command, status, attempts, idempotency_key"
    " FROM stripe_outbox ORDER BY merchant_id, idempotency_key",
    "numbering": "SELECT s.merchant_id, s.last_number, p.prefix FROM invoice_number_sequences s"
    " LEFT JOIN invoice_number_prefixes p ON p.merchant_id = s.merchant_id"
    " ORDER BY s.merchant_id",
    "migrations": "SELECT name FROM migration ORDER BY name",
}


async def _ledger(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    connection = await asyncpg.connect(database_url)
    try:
        return {
            what: [tuple(row) for row in await connection.fetch(sql)]
            for what, sql in _LEDGER.items()
        }
    finally:
        await connection.close()


async def test_the_restore_drill_brings_back_invoices_usage_and_the_outbox_equal(
    cluster: Cluster, month: Month, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The README's recipe: `pg_dump -Fc` as the migrator, `roles.sql` for a fresh database,
    `pg_restore` as the migrator; then `billing serve` as the runtime role answers from it."""
    dump = tmp_path_factory.mktemp("drill") / "billing.dump"
    original = cluster.url(MIGRATOR, month.database)
    await asyncio.to_thread(
        subprocess.run,
        [str(cluster.bin / "pg_dump"), "--format=custom", f"--file={dump}", original],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    restored_name = new_database(cluster)
    restored = cluster.url(MIGRATOR, restored_name)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(cluster.bin / "pg_restore"), "--exit-on-error", "--single-transaction",
            f"--dbname={restored}", str(dump),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    before = await _ledger(cluster.url("postgres", month.database))
    after = await _ledger(cluster.url("postgres", restored_name))
    assert all(before[what] for what in ("invoices", "usage totals", "outbox")), before
    for what in _LEDGER:
        assert after[what] == before[what], what

    # The runtime role's grants came back with it: the service runs on the copy as before.
    server = start_server(cluster.url(RUNTIME, restored_name), extra_env=PRODUCTION)
    try:
        key = operator_key(cluster.url(RUNTIME, restored_name))
        async with httpx.AsyncClient(base_url=server.base_url) as api:
            listed = await api.get("/v1/invoices", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200, listed.text
        assert {i["number"] for i in listed.json()} == {row[1] for row in before["invoices"]}
    finally:
        assert server.stop() == 0


# -- TLS to the database -------------------------------------------------------------------------


def test_serve_speaks_tls_to_the_database_as_sslmode_says(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = new_database(cluster)
    migrate(cluster.url(MIGRATOR, name))
    verified = cluster.url(
        RUNTIME,
        name,
        query=f"sslmode=verify-full&sslrootcert={cluster.certificate}&application_name=kefu-tls",
    )
    server = start_server(verified, extra_env=PRODUCTION)
    try:
        seen = cluster.psql(
            name,
            sql="SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a"
            " JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'kefu-tls'",
        )
        count, all_tls = seen.strip().split("|")
        assert int(count) > 0
        assert all_tls == "t"
    finally:
        assert server.stop() == 0

    # A server whose certificate is not the one trusted: refused at once, in one line.
    other = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(other / "ca.key"),
            "-out", str(other / "ca.crt"),
        ],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    untrusted = cluster.url(
        RUNTIME, name, query=f"sslmode=verify-full&sslrootcert={other / 'ca.crt'}"
    )
    done = billing("serve", database_url=untrusted)
    assert done.returncode == 1
    (line,) = said(done)
    assert line.startswith("error: cannot reach the database securely")
    assert "sslrootcert" in line


# -- PgBouncer -----------------------------------------------------------------------------------


async def test_serve_and_worker_work_behind_pgbouncer_in_transaction_pooling(
    cluster: Cluster,
) -> None:
    """Two APIs and a worker share 3 PostgreSQL connections through Debian's PgBouncer (1.18,
    transaction pooling, no prepared statements across transactions). With asyncpg's statement
    cache (its default) `billing serve` does not even start here ("prepared statement
    __asyncpg_stmt_1__ already exists"); BILLING_DB_STATEMENT_CACHE_SIZE=0 makes every request
    answer. `billing migrate` goes straight to PostgreSQL (its lock is a session lock)."""
    name = new_database(cluster)
    migrate(cluster.url(MIGRATOR, name))
    bouncer = start_pgbouncer(cluster, server_connections=3)
    pooled = cluster.url(RUNTIME, name, port=bouncer.port)
    behind = {**PRODUCTION, "BILLING_DB_STATEMENT_CACHE_SIZE": "0"}
    servers: list[ServerProcess] = []
    worker: WorkerProcess | None = None
    try:
        key = operator_key(pooled, BILLING_DB_STATEMENT_CACHE_SIZE="0")
        operator = {"Authorization": f"Bearer {key}"}
        servers = [start_server(pooled, extra_env=behind) for _ in range(2)]
        worker = start_worker(pooled, "--interval", "0.3", extra_env=behind)
        apis = [httpx.AsyncClient(base_url=s.base_url, timeout=60) for s in servers]
        try:
            clock = await apis[0].post(
                "/v1/test-clocks",
                json={"frozen_time": "2026-09-01T00:00:00+08:00", "name": "pgbouncer"},
                headers=operator,
            )
            assert clock.status_code == 201, clock.text
            clock_id = clock.json()["id"]
            merchants = []
            for n in range(3):
                merchants.append(
                    await _sign_up_on_clock(
                        apis[n % 2],
                        operator,
                        clock_id,
                        f"Pooled shop {n}",
                        f"pooled-signup-{name}-{n}",
                    )
                )
            moved = await apis[1].post(
                f"/v1/test-clocks/{clock_id}/advance",
                json={"frozen_time": "2026-09-16T00:00:00+08:00"},
                headers=operator,
            )
            assert moved.status_code == 200, moved.text
            sent = await asyncio.gather(*(_send_usage(apis, k, m) for m, k in merchants))
            server_connections = cluster.psql(
                name,
                sql="SELECT count(*) FROM pg_stat_activity WHERE usename = 'billing_runtime'",
            )
            assert int(server_connections) <= 3  # 2 API pools and a worker's, multiplexed
            moved = await apis[0].post(
                f"/v1/test-clocks/{clock_id}/advance",
                json={"frozen_time": "2026-10-03T00:00:00+08:00"},
                headers=operator,
            )
            assert moved.status_code == 200, moved.text
            await _until_invoiced(cluster.url("postgres", name), len(merchants))
            for (merchant, merchant_key), events in zip(merchants, sent, strict=True):
                headers = {"Authorization": f"Bearer {merchant_key}"}
                listed = await apis[1].get(
                    "/v1/invoices", params={"period": "2026-09"}, headers=headers
                )
                assert listed.status_code == 200, listed.text
                [september] = [i for i in listed.json() if i["kind"] == "period"]
                invoice = await apis[0].get(f"/v1/invoices/{september['id']}", headers=headers)
                [orders] = [
                    line for line in invoice.json()["lines"] if line["charge_code"] == "orders"
                ]
                assert orders["explanation"].startswith(f"{len(events)} orders"), merchant
        finally:
            for api in apis:
                await api.aclose()
    finally:
        if worker is not None:
            worker.process.terminate()
            output = worker.finish(timeout=60)
            assert worker.returncode == 0, output
            assert "worker_pass_failed" not in output
        for server in servers:
            assert server.stop() == 0
        bouncer.stop()
