"""Growing a Citus cluster under Kefu Billing's schema, as ``infra/README.md`` describes it.

``python -m tests.citus_growth`` starts a coordinator and 2 workers from the installed Citus
(``tests.citus_cluster``), migrates a database there (the tables distributed by ``billing
migrate``), fills it with merchants' subscriptions, periods, usage and invoices, then:

1. adds a third worker and rebalances (``citus_rebalance_start`` with ``block_writes``: the
   partitions of ``usage_events`` have no primary key, so logical replication cannot move them);
2. isolates one merchant to shards of its own (``isolate_tenant_to_new_shard``, cascading to
   every colocated table) and moves them to the new worker (``citus_move_shard_placement``);
3. creates next months' partitions (``billing partitions``' code) and checks they are
   distributed and colocated;

checking after each step that every table holds the same rows as before, that the merchant's
rows of every table sit on one node, and that a period close still runs. It prints what it saw
and removes the cluster; it exits non-zero when a check fails. Not part of ``make test``
(a few minutes); run by hand when the growth steps or the schema change.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from service.bench import close as bench_close
from tests import citus_cluster

MERCHANTS = 60
EVENTS = 60_000


def say(text: str) -> None:
    print(text, flush=True)


async def _counts(connection: asyncpg.Connection) -> dict[str, int]:
    tables = await connection.fetch(
        "SELECT logicalrelid::regclass::text AS name FROM pg_dist_partition"
        " WHERE partmethod = 'h' AND NOT logicalrelid::regclass::text ~ '_(\\d{4}_\\d{2}|default)$'"
        " ORDER BY 1"
    )
    return {
        row["name"]: int(await connection.fetchval(f'SELECT count(*) FROM "{row["name"]}"'))
        for row in tables
    }


async def _nodes_of(connection: asyncpg.Connection, merchant_id: object) -> set[str]:
    """The nodes holding the shards that contain ``merchant_id`` in every distributed table."""
    rows = await connection.fetch(
        "SELECT DISTINCT s.nodename || ':' || s.nodeport AS node"
        " FROM pg_dist_partition p"
        " JOIN citus_shards s ON s.table_name = p.logicalrelid"
        " WHERE p.partmethod = 'h'"
        "   AND s.shardid = get_shard_id_for_distribution_column(p.logicalrelid, $1::uuid)",
        merchant_id,
    )
    return {row["node"] for row in rows}


async def _shards_per_node(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT nodename || ':' || nodeport AS node, count(*) AS shards FROM citus_shards"
        " WHERE citus_table_type = 'distributed' GROUP BY 1 ORDER BY 1"
    )
    return {row["node"]: int(row["shards"]) for row in rows}


def _close_pass(dsn: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "billing"), "worker", "--once"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": dsn, "BILLING_LOG_LEVEL": "WARNING"},
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"billing worker --once failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


async def _grow(cluster: citus_cluster.LocalCluster) -> list[str]:
    failures: list[str] = []
    dsn = cluster.coordinator.url("growth")
    await citus_cluster.prepare_database(dsn)
    os.environ["BILLING_CITUS_SHARD_COUNT"] = "8"
    started = time.perf_counter()
    await bench_close._prepare(dsn, MERCHANTS, EVENTS)
    seconds = time.perf_counter() - started
    say(f"filled: {MERCHANTS} merchants, {EVENTS:,} usage events ({seconds:.1f} s)")
    connection = await asyncpg.connect(dsn)
    try:
        before = await _counts(connection)
        merchant_id = await connection.fetchval(
            "SELECT merchant_id FROM subscriptions ORDER BY merchant_id LIMIT 1"
        )
        say(f"shards per node before: {await _shards_per_node(connection)}")

        # 1. A third worker, then a rebalance.
        new = citus_cluster.add_worker(cluster)
        admin = await asyncpg.connect(new.url())
        try:
            await admin.execute("CREATE DATABASE growth")
        finally:
            await admin.close()
        worker = await asyncpg.connect(new.url("growth"))
        try:
            await worker.execute("CREATE EXTENSION citus")
        finally:
            await worker.close()
        await connection.execute("SELECT citus_add_node('127.0.0.1', $1)", new.port)
        started = time.perf_counter()
        # The monthly partitions of usage_events have no primary key (nor replica identity), so
        # their shards cannot move by logical replication: writes to a moving shard wait.
        await connection.execute(
            "SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')"
        )
        await connection.execute("SELECT citus_rebalance_wait()")
        say(
            f"rebalanced onto 3 workers in {time.perf_counter() - started:.1f} s: shards per node"
            f" {await _shards_per_node(connection)}"
        )
        if f"127.0.0.1:{new.port}" not in await _shards_per_node(connection):
            failures.append("the rebalance moved no shard to the new worker")
        if await _counts(connection) != before:
            failures.append("rows differ after the rebalance")
        if len(await _nodes_of(connection, merchant_id)) != 1:
            failures.append("a merchant's rows are on several nodes after the rebalance")

        # 2. One merchant on shards of its own, on the new worker.
        started = time.perf_counter()
        isolated = await connection.fetchval(
            "SELECT isolate_tenant_to_new_shard('merchants', $1::uuid, 'CASCADE',"
            " shard_transfer_mode => 'block_writes')",
            merchant_id,
        )
        where = await connection.fetchrow(
            "SELECT nodename, nodeport FROM citus_shards WHERE shardid = $1", isolated
        )
        if where["nodeport"] != new.port:
            await connection.execute(
                "SELECT citus_move_shard_placement($1, $2, $3, '127.0.0.1', $4,"
                " shard_transfer_mode => 'block_writes')",
                isolated,
                where["nodename"],
                where["nodeport"],
                new.port,
            )
        nodes = await _nodes_of(connection, merchant_id)
        say(
            f"merchant {merchant_id} isolated (shard {isolated}) and on {sorted(nodes)} in"
            f" {time.perf_counter() - started:.1f} s"
        )
        others = await connection.fetchval(
            "SELECT count(DISTINCT merchant_id) FROM subscriptions"
            " WHERE get_shard_id_for_distribution_column('merchants', merchant_id) = $1",
            isolated,
        )
        if nodes != {f"127.0.0.1:{new.port}"} or others != 1:
            failures.append(f"the isolated merchant is on {nodes}, sharing with {others - 1}")
        if await _counts(connection) != before:
            failures.append("rows differ after isolating the merchant")

        # 3. Next months' partitions, distributed as they are made.
        from service.db import engine as db_engine
        from service.db.partitions import USAGE_EVENTS, ensure_months

        database = db_engine.connect(dsn)
        await database.start_pool(min_size=1, max_size=2)
        try:
            made = await ensure_months(
                USAGE_EVENTS, months_ahead=1, now=datetime(2031, 6, 1, tzinfo=UTC)
            )
        finally:
            await database.close()
        placed = await connection.fetch(
            "SELECT table_name::text AS name, colocation_id FROM citus_tables"
            " WHERE table_name::text = ANY($1::text[])",
            list(made),
        )
        anchor = await connection.fetchval(
            "SELECT colocation_id FROM citus_tables WHERE table_name = 'merchants'::regclass"
        )
        say(f"new partitions {sorted(made)}: {[(r['name'], r['colocation_id']) for r in placed]}")
        if (
            not made
            or len(placed) != len(made)
            or any(r["colocation_id"] != anchor for r in placed)
        ):
            failures.append("new monthly partitions are not distributed and colocated")
    finally:
        await connection.close()

    # The close still runs across the moved shards.
    say(f"close after growing: {_close_pass(dsn) or 'done'}")
    connection = await asyncpg.connect(dsn)
    try:
        invoiced = await connection.fetchval("SELECT count(*) FROM invoices WHERE kind = 'period'")
    finally:
        await connection.close()
    say(f"period invoices: {invoiced} of {MERCHANTS}")
    if invoiced != MERCHANTS:
        failures.append(f"{invoiced} period invoices for {MERCHANTS} ended periods")
    return failures


def main() -> int:
    bin_dir, why_not = citus_cluster.installed_citus()
    if bin_dir is None:
        say(f"SKIPPED: {why_not}")
        return 2
    cluster = citus_cluster.start()
    try:
        failures = asyncio.run(_grow(cluster))
    finally:
        cluster.stop()
    for failure in failures:
        say(f"FAILED: {failure}")
    say("all growth checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
