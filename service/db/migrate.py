"""Applying the Piccolo migrations, safely from several processes at once, and checking that a
database is at this code's migrations.

Only ``billing migrate`` (and ``billing partitions``) run DDL. ``serve``, ``worker`` and the
other commands check the schema instead (`check_schema`) and refuse a database that is behind
or ahead of the code, so they can run as a role without DDL rights, behind PgBouncer (the
migration lock below is a session lock: ``migrate`` connects straight to PostgreSQL)."""

from __future__ import annotations

import contextlib
import io

import asyncpg
import structlog
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards

from service.db import distribution
from service.db.engine import Database

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_240_311


class MigrationFailed(RuntimeError):
    """A migration could not be applied; the message says why, in one line."""


async def migrate(database: Database, *, shard_count: int = 32) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now. On a Citus
    coordinator, then place every table not yet placed (``service.db.distribution``; new
    distributed tables get ``shard_count`` shards)."""
    lock_connection = await asyncpg.connect(**database.engine.config)
    try:
        await lock_connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        before = await _applied(lock_connection)
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            result = await run_forwards(app_name="billing", migration_id="all", fake=False)
        if not result.success:
            said = " ".join(f"{result.message} {output.getvalue()}".split())
            raise MigrationFailed(
                f"migrations failed: {said} (`billing migrate` needs the migrator role, which"
                " owns the schema: see infra/sql/roles.sql)"
            )
        applied_now = sorted(set(await _applied(lock_connection)) - set(before))
        if applied_now:
            log.info("migrations_applied", migrations=applied_now)
        try:
            await distribution.distribute(lock_connection, shard_count=shard_count)
        except (distribution.UnplacedTable, asyncpg.PostgresError) as error:
            raise MigrationFailed(f"distributing the tables on Citus failed: {error}") from error
        return applied_now
    finally:
        with contextlib.suppress(Exception):
            await lock_connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await lock_connection.close()


async def _applied(connection: asyncpg.Connection) -> list[str]:
    has_table = await connection.fetchval("SELECT to_regclass('public.migration') IS NOT NULL")
    if not has_table:
        return []
    rows = await connection.fetch("SELECT name FROM migration WHERE app_name = 'billing'")
    return [row["name"] for row in rows]


class SchemaMismatch(RuntimeError):
    """The database's applied migrations are not this code's; the message says what to do."""


def known_migrations() -> list[str]:
    """The ids of this code's migrations, oldest first (read the way Piccolo reads them)."""
    from service.db.piccolo_app import APP_CONFIG

    modules = BaseMigrationManager().get_migration_modules(APP_CONFIG.migrations_folder_path)
    return sorted(modules)


async def check_schema(database: Database) -> None:
    """Raise `SchemaMismatch` unless the database has exactly this code's migrations applied.

    Reads the ``migration`` table only (a runtime role can); nothing is changed."""
    connection = await asyncpg.connect(**database.engine.config)
    try:
        applied = set(await _applied(connection))
    finally:
        await connection.close()
    known = known_migrations()
    if not applied:
        raise SchemaMismatch(
            "the database has no billing schema yet: run `billing migrate` first"
            " (as the migrator role, straight to PostgreSQL, not through PgBouncer)"
        )
    missing = [name for name in known if name not in applied]
    if missing:
        raise SchemaMismatch(
            f"the database schema is behind this billing ({len(missing)} migration(s) not"
            f" applied, the newest {missing[-1]}): run `billing migrate` first (as the migrator"
            " role, straight to PostgreSQL, not through PgBouncer)"
        )
    unknown = sorted(applied - set(known))
    if unknown:
        raise SchemaMismatch(
            f"the database schema is newer than this billing ({len(unknown)} migration(s) it"
            f" does not know, the newest {unknown[-1]}): run the billing version that migrated"
            " it, or a newer one"
        )
