"""The audit log is partitioned by month, every entry has a merchant (operator actions: the
platform tenant), the operator API reads it as before, and the migration moves existing entries
(NULL merchants included) without losing one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from httpx import AsyncClient
from piccolo.apps.migrations.commands.forwards import run_forwards

from service.db import engine as db_engine
from service.db.engine import Database
from service.db.migrate import migrate
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from tests import citus_cluster
from tests.citus_cluster import unsharded
from tests.integration.conftest import Tenant

BEFORE_PARTITIONING = "2026-12-05T23:00:00:000000"


async def test_operator_actions_are_stored_under_the_platform_tenant_and_listed_as_before(
    database: Database, client: AsyncClient, operator: Tenant, tenant: Tenant
) -> None:
    is_partitioned = await database.pool.fetchval(
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'audit_log'::regclass"
    )
    assert is_partitioned == 1
    made = await client.post(
        "/v1/api-keys", json={"name": "ops-audit", "role": "operator"}, headers=operator.headers
    )
    assert made.status_code == 201, made.text
    key_id = made.json()["id"]
    stored = await database.pool.fetchrow(
        "SELECT merchant_id, tableoid::regclass::text AS part FROM audit_log"
        " WHERE entity = 'api_key' AND entity_id = $1",
        key_id,
    )
    assert stored["merchant_id"] == PLATFORM_MERCHANT_ID
    assert unsharded(stored["part"]) == datetime.now(UTC).strftime("audit_log_%Y_%m")

    everything = await client.get("/v1/audit-log", headers=operator.headers)
    [listed] = [e for e in everything.json()["entries"] if e["entity_id"] == key_id]
    assert (listed["merchant_id"], listed["action"]) == (None, "created")
    await client.patch("/v1/merchants/me", json={"name": "Audited A"}, headers=tenant.headers)
    only_a = await client.get(
        "/v1/audit-log", params={"merchant_id": str(tenant.merchant_id)}, headers=operator.headers
    )
    entries = only_a.json()["entries"]
    assert entries
    assert {e["merchant_id"] for e in entries} == {str(tenant.merchant_id)}


async def test_the_migration_moves_every_entry_into_monthly_partitions(database: Database) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    dsn = db_engine._with_database(database.dsn, name)
    await citus_cluster.prepare_database(dsn)
    previous = db_engine.current()
    other = db_engine.connect(dsn)
    try:
        result = await run_forwards(app_name="billing", migration_id=BEFORE_PARTITIONING)
        assert result.success, result.message
        connection = await asyncpg.connect(dsn)
        try:
            merchant = await connection.fetchval(
                "INSERT INTO merchants (name, contact_email) VALUES ('Old shop', '') RETURNING id"
            )
            rows = [
                (merchant, datetime(2025, 3, 2, tzinfo=UTC)),
                (None, datetime(2025, 3, 20, tzinfo=UTC)),  # an operator action, before
                (None, datetime.now(UTC)),
            ]
            for merchant_id, at in rows:
                await connection.execute(
                    "INSERT INTO audit_log (merchant_id, actor_role, entity, entity_id, action,"
                    " at) VALUES ($1, 'operator', 'merchant', 'x', 'updated', $2)",
                    merchant_id,
                    at,
                )
            ids_before = [r["id"] for r in await connection.fetch("SELECT id FROM audit_log")]
            await migrate(other, shard_count=citus_cluster.SHARD_COUNT)
            moved = await connection.fetch(
                "SELECT id, merchant_id, at, tableoid::regclass::text AS part FROM audit_log"
                " ORDER BY id"
            )
            assert [row["id"] for row in moved] == sorted(ids_before)
            assert [(row["merchant_id"], unsharded(row["part"])) for row in moved] == [
                (merchant, "audit_log_2025_03"),
                (PLATFORM_MERCHANT_ID, "audit_log_2025_03"),
                (PLATFORM_MERCHANT_ID, datetime.now(UTC).strftime("audit_log_%Y_%m")),
            ]
            # Every month from the oldest entry on has its partition; new ids keep increasing.
            assert await connection.fetchval("SELECT to_regclass('audit_log_2025_04')")
            new_id = await connection.fetchval(
                "INSERT INTO audit_log (merchant_id, actor_role, entity, entity_id, action)"
                " VALUES ($1, 'operator', 'merchant', 'x', 'updated') RETURNING id",
                merchant,
            )
            assert new_id > max(ids_before)
        finally:
            await connection.close()
    finally:
        db_engine.rebind(previous)
        await other.close()
        await citus_cluster.drop_database(dsn)
