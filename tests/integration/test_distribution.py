"""Citus: every table has a placement, tenant tables distribute and colocate by merchant, writes
and row locks name the merchant, the ingest write runs on one node. The same suite runs on plain
PostgreSQL (``make test``) and on a local Citus cluster (``make test-citus``); the tests that
read Citus' own catalog skip on plain PostgreSQL, saying so."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from service.db import distribution
from service.db.distribution import PLACEMENTS, Placement
from service.db.engine import Database
from service.db.tables import ALL_TABLES, Invoice, TenantRows, UsageAggregateRow
from service.usage import ingest
from tests import recorded_sql
from tests.integration.conftest import Tenant

NEEDS_CITUS = "needs a Citus coordinator: runs in `make test-citus`"


async def _is_citus(database: Database) -> bool:
    async with database.pool.acquire() as connection:
        return await distribution.has_citus(connection)


async def test_every_table_of_the_schema_has_a_citus_placement(database: Database) -> None:
    async with database.pool.acquire() as connection:
        assert await distribution.unplaced_tables(connection) == []
    # ... and every placement names a table that exists (no stale entries).
    tables = {
        row["relname"]
        for row in await database.pool.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT relispartition"
        )
    }
    assert set(PLACEMENTS) <= tables


def test_tenant_tables_write_through_rows_that_name_their_merchant() -> None:
    """Piccolo's save() and remove() of a stored row of a distributed table name merchant_id;
    a table whose Piccolo key is not the row's key refuses them."""
    for table in ALL_TABLES:
        is_distributed = PLACEMENTS[table._meta.tablename] is Placement.DISTRIBUTED
        is_merchants = table._meta.tablename == distribution.COLOCATION_ANCHOR
        assert issubclass(table, TenantRows) == (is_distributed and not is_merchants), table
    invoice = Invoice(_exists_in_db=True)
    invoice_id = invoice.id = uuid.uuid4()
    merchant_id = invoice.merchant_id = uuid.uuid4()
    for statement in (str(invoice.save([Invoice.status])), str(invoice.remove())):
        assert f'"invoices"."merchant_id" = \'{merchant_id}\'' in statement
        assert f'"invoices"."id" = \'{invoice_id}\'' in statement
    aggregate = UsageAggregateRow(_exists_in_db=True)
    with pytest.raises(TypeError, match="write the statement by hand"):
        aggregate.save([UsageAggregateRow.event_count])


async def test_a_row_lock_without_the_merchant_is_caught_here_as_citus_refuses_it(
    database: Database, tenant: Tenant
) -> None:
    shardless = "SELECT id FROM invoices WHERE id = $1 FOR UPDATE"
    routed = "SELECT id FROM invoices WHERE merchant_id = $1 AND id = $2 FOR UPDATE"
    is_citus = await _is_citus(database)
    async with database.pool.acquire() as connection:
        if is_citus:
            with pytest.raises(asyncpg.FeatureNotSupportedError, match="FOR UPDATE"):
                async with connection.transaction():
                    await connection.fetch(shardless, uuid.uuid4())
        else:
            async with connection.transaction():
                await connection.fetch(shardless, uuid.uuid4())
    async with database.pool.acquire() as connection, connection.transaction():
        await connection.fetch(routed, tenant.merchant_id, uuid.uuid4())
    caught = recorded_sql.shardless_locks(recorded_sql.SEEN)
    recorded_sql.SEEN.clear()  # seen and checked here: not this test's failure at teardown
    assert caught == ["SELECT … FROM invoices WHERE id = $1 FOR UPDATE"]
    assert (
        recorded_sql.shardless_locks(
            [
                "SELECT 1 FROM stripe_inbox WHERE status = 'pending' FOR UPDATE SKIP LOCKED",
                'SELECT "merchants"."id" FROM "merchants" WHERE "merchants"."id" = $1 FOR UPDATE',
            ]
        )
        == []
    )
    assert recorded_sql.shardless_locks(
        ["SELECT id FROM stripe_outbox WHERE merchant_id = ANY($1) FOR UPDATE"]
    ) == ["SELECT … FROM stripe_outbox WHERE merchant_id = ANY($1) FOR UPDATE"]


async def test_migrating_again_places_nothing_more(database: Database) -> None:
    async with database.pool.acquire() as connection:
        assert await distribution.distribute(connection, shard_count=4) == []


async def test_on_citus_tenant_tables_are_colocated_by_merchant_and_the_rest_as_placed(
    database: Database,
) -> None:
    if not await _is_citus(database):
        pytest.skip(NEEDS_CITUS)
    rows = await database.pool.fetch(
        "SELECT table_name::text AS name, citus_table_type AS kind, distribution_column,"
        " colocation_id FROM citus_tables"
    )
    placed = {row["name"]: row for row in rows}
    colocation = placed["merchants"]["colocation_id"]
    for table, placement in PLACEMENTS.items():
        if placement is Placement.DISTRIBUTED:
            row = placed[table]
            assert row["kind"] == "distributed", table
            assert row["distribution_column"] == distribution.distribution_column(table), table
            assert row["colocation_id"] == colocation, table
        elif placement is Placement.REFERENCE:
            assert placed[table]["kind"] == "reference", table
        else:
            assert table not in placed, table
    # Monthly partitions are distributed with their table, colocated too.
    partitions = [row for name, row in placed.items() if name.startswith("usage_events_20")]
    assert partitions
    assert {row["colocation_id"] for row in partitions} == {colocation}
    functions = await database.pool.fetch(
        "SELECT p.proname FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid"
        " WHERE o.classid = 'pg_proc'::regclass AND o.distribution_argument_index IS NOT NULL"
    )
    assert {row["proname"] for row in functions} == set(distribution.DISTRIBUTED_FUNCTIONS)


async def test_on_citus_the_usage_write_is_one_task_on_the_merchants_node(
    database: Database, tenant: Tenant
) -> None:
    if not await _is_citus(database):
        pytest.skip(NEEDS_CITUS)
    now = dt.datetime.now(dt.UTC)
    plan = await database.pool.fetch(
        "EXPLAIN " + ingest._STORE,
        tenant.merchant_id, 0, 0, "t-1", [b"h" * 16], "1", "orders", "1", "", "",
        [uuid.uuid4()], [now], "1",
    )  # fmt: skip
    text = "\n".join(row[0] for row in plan)
    assert "Task Count: 1" in text, text
    node = await database.pool.fetchrow(
        "SELECT nodename, nodeport FROM citus_shards"
        " WHERE shardid = get_shard_id_for_distribution_column('merchants', $1::uuid)",
        tenant.merchant_id,
    )
    assert f"host={node['nodename']} port={node['nodeport']}" in text, text
