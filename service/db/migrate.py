"""Applying the Piccolo migrations, safely from several processes at once."""

from __future__ import annotations

import contextlib
import io

import asyncpg
import structlog
from piccolo.apps.migrations.commands.forwards import run_forwards

from service.db.engine import Database

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_240_311


async def migrate(database: Database) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now."""
    lock_connection = await asyncpg.connect(**database.engine.config)
    try:
        await lock_connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        before = await _applied(lock_connection)
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            result = await run_forwards(app_name="billing", migration_id="all", fake=False)
        if not result.success:
            raise RuntimeError(f"migrations failed: {result.message}\n{output.getvalue()}")
        applied_now = sorted(set(await _applied(lock_connection)) - set(before))
        if applied_now:
            log.info("migrations_applied", migrations=applied_now)
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
