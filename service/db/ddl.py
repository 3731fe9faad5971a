"""Running hand-written SQL inside a Piccolo migration's transaction."""

from __future__ import annotations

import asyncpg
from piccolo.engine import engine_finder


def transaction_connection() -> asyncpg.Connection:
    """The connection of the migration's own transaction (for migrations that read the schema
    before they change it)."""
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no Piccolo engine configured")
    transaction = engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("a migration's SQL must run inside the migration's transaction")
    return transaction.connection


async def execute_script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection (same transaction)."""
    await transaction_connection().execute(sql)
