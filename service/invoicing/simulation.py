"""Running the period close for real, or as a preview inside one transaction that is rolled back.

The upcoming invoice, a change quote's next invoices and ``billing close-periods --dry-run``
are the close itself (``service.invoicing.close``) run on the recorded facts, then undone: the
same code drafts them, so a preview cannot drift from the invoice. Each unit of the close (a
subscription brought up to date, an immediate invoice, a batch of periods, a balance settled)
is a transaction of its own when run for real; inside a preview it is a savepoint of the preview's
transaction, so a unit that fails is undone alone, as it would be, and everything is undone
at the end: no invoice, number, credit note, balance movement or Stripe push is kept.

A preview holds the merchant's rows it touched until it ends (a few tens of milliseconds) and
waits at most ``LOCK_TIMEOUT`` for rows a worker holds; what a worker is closing at that very
moment is skipped, as a second worker would skip it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Final

import asyncpg
import structlog

from service.db.engine import current as current_database
from service.errors import ConcurrentChange

LOCK_TIMEOUT: Final = "3s"
_PREVIEW: ContextVar[bool] = ContextVar("close_preview", default=False)


def in_preview() -> bool:
    return _PREVIEW.get()


@asynccontextmanager
async def rolled_back() -> AsyncIterator[None]:
    """A preview: one transaction in which the close's units run as savepoints, always rolled
    back. Log lines written inside it carry ``dry_run=true``."""
    engine = current_database().engine
    if engine.current_transaction.get() is not None:
        raise RuntimeError("a preview needs a transaction of its own, not the caller's")
    token = _PREVIEW.set(True)
    try:
        async with engine.transaction() as transaction:
            await transaction.connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            with structlog.contextvars.bound_contextvars(dry_run=True):
                try:
                    yield
                except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                    raise ConcurrentChange(
                        "the merchant's invoices are being made or changed right now; "
                        "retry in a moment"
                    ) from None
            await transaction.rollback()
    finally:
        _PREVIEW.reset(token)


@asynccontextmanager
async def unit() -> AsyncIterator[None]:
    """One unit of the close: its own transaction, or a savepoint inside a preview."""
    engine = current_database().engine
    outer = engine.current_transaction.get()
    if outer is None or not in_preview():
        async with engine.transaction():
            yield
        return
    savepoint = await outer.savepoint()
    try:
        yield
    except BaseException:
        await savepoint.rollback_to()
        raise
    await savepoint.release()


def reader() -> Any:
    """Where the close looks for work: the pool, or inside a preview the preview's own
    connection (which sees what earlier units of the preview did)."""
    transaction = current_database().engine.current_transaction.get()
    if transaction is not None and in_preview():
        return transaction.connection
    return current_database().pool
