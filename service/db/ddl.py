"""Running hand-written SQL inside a Piccolo migration's transaction."""

from __future__ import annotations

from piccolo.engine import engine_finder


async def execute_script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection (same transaction)."""
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no Piccolo engine configured")
    transaction = engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("execute_script must run inside the migration's transaction")
    await transaction.connection.execute(sql)
