"""Migrations and table definitions describe the same schema; migrating twice changes nothing."""

from __future__ import annotations

import uuid

import asyncpg

from service.db import engine as db_engine
from service.db.engine import Database
from service.db.migrate import migrate
from service.db.tables import ALL_TABLES
from tests import citus_cluster

COLUMNS_SQL = """
SELECT table_name, column_name, udt_name, is_nullable
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = ANY($1::text[])
ORDER BY table_name, column_name
"""

SCHEMA_SQL = """
SELECT 'column' AS kind, table_name || '.' || column_name || ' ' || udt_name || ' '
       || is_nullable || ' ' || coalesce(column_default, '') AS what
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def _table_names() -> list[str]:
    return [table._meta.tablename for table in ALL_TABLES]


async def test_piccolo_tables_match_the_migrated_schema(database: Database) -> None:
    migrated = [tuple(r) for r in await database.pool.fetch(COLUMNS_SQL, _table_names())]

    name = f"fresh_{uuid.uuid4().hex[:8]}"
    dsn = db_engine._with_database(database.dsn, name)
    await citus_cluster.prepare_database(dsn)
    fresh = await asyncpg.connect(dsn)
    try:
        for table in ALL_TABLES:
            for statement in table.create_table().ddl:
                await fresh.execute(statement)
        from_tables = [tuple(r) for r in await fresh.fetch(COLUMNS_SQL, _table_names())]
    finally:
        await fresh.close()
        await citus_cluster.drop_database(dsn)

    assert from_tables == migrated


async def test_a_fresh_database_and_a_remigrated_one_end_the_same(database: Database) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    dsn = db_engine._with_database(database.dsn, name)
    await citus_cluster.prepare_database(dsn)
    try:
        fresh_schema = await _migrated_schema_of(database, name)
        # The session database, already migrated (and distributed, on Citus).
        again = await migrate(database, shard_count=citus_cluster.SHARD_COUNT)
        assert again == []
        session_schema = [tuple(r) for r in await database.pool.fetch(SCHEMA_SQL)]
        assert fresh_schema == session_schema
    finally:
        await citus_cluster.drop_database(dsn)


async def _migrated_schema_of(database: Database, name: str) -> list[tuple[str, str]]:
    """Migrate database ``name`` from scratch with its own engine, then read its schema."""
    dsn = db_engine._with_database(database.dsn, name)
    previous = db_engine.current()
    other = db_engine.connect(dsn)
    try:
        applied = await migrate(other, shard_count=citus_cluster.SHARD_COUNT)
        assert applied, "a fresh database gets every migration"
        connection = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await connection.fetch(SCHEMA_SQL)]
        finally:
            await connection.close()
    finally:
        db_engine.rebind(previous)
