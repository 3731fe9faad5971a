"""What every ``billing`` command shares: the settings (read once, logging set up), the database
started or reached and migrated around a command's work, the console, progress bars, and user
errors said in one line.

``service.cli`` (the command's root) and ``webhooks.commands`` both build on this module, so
neither imports the other. It imports nothing heavy at module level: ``billing --help`` must not
pay for asyncpg, Litestar, Stripe or pyarrow.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from service.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from service.db.engine import Database

T = TypeVar("T")


class UserError(Exception):
    """Something the person at the terminal can fix: printed as one line, exit status 1 (or
    ``exit_code``), never a traceback."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@functools.cache
def console() -> Console:
    """The console commands print to (standard output)."""
    from rich.console import Console

    return Console()


def settings(*, log_level: str | None = None) -> Settings:
    """The settings from the environment, with logging configured from them. ``log_level``
    overrides ``BILLING_LOG_LEVEL`` (``billing demo`` is quiet unless asked)."""
    from service.observability import logging as billing_logging
    from service.payments import links as payment_links

    found = Settings.from_env()
    billing_logging.configure(log_format=found.log_format, level=log_level or found.log_level)
    payment_links.configure(found.payments)  # links a command's work may make (events)
    return found


def run_with_database(
    settings: Settings,
    work: Callable[[], Awaitable[T]],
    *,
    pool_max: int = 4,
    migrates: bool = False,
    waits: bool = False,
    retries_work: bool = False,
) -> T:
    """Start or reach the database, check its schema (or migrate it: ``migrates``), run
    ``work``, close the pool. ``waits``: wait for PostgreSQL to accept connections first (the
    long-running processes and ``migrate``, which may start before the database does).
    ``retries_work``: ``work`` is a brief step that may run again from the start (``serve``'s
    first-key check, partition upkeep); PostgreSQL going away in the middle of it is waited out
    too (a server starting while PostgreSQL restarts comes up when it is back)."""

    async def runner() -> T:
        database = await prepare_database(
            settings, pool_max=pool_max, migrates=migrates, waits=waits
        )
        try:
            if retries_work:
                return await retry_while_unreachable(settings, work)
            return await work()
        finally:
            await database.close()

    return asyncio.run(runner())


async def retry_while_unreachable(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` again, every half second, while the database is out of reach, for at most
    ``BILLING_DB_WAIT_SECONDS``; any other error (or the wait used up) goes to the caller."""
    from service.db import engine as db_engine

    deadline = asyncio.get_running_loop().time() + settings.database.wait_seconds
    has_said = False
    while True:
        try:
            return await work()
        except Exception as error:
            # Everything ``work`` touches is the database's: any connection failure counts.
            if not (db_engine.is_connection_failure(error) or db_engine.is_unavailable(error)):
                raise
            if asyncio.get_running_loop().time() >= deadline:
                raise
            if not has_said:
                _say_waiting(settings)(error)
                has_said = True
            await asyncio.sleep(0.5)


async def prepare_database(
    settings: Settings, *, pool_max: int = 4, migrates: bool = False, waits: bool = False
) -> Database:
    """Connect (starting the embedded server if there is no ``DATABASE_URL``), then either
    migrate and make the months ahead (``migrates``: ``billing migrate``, the only DDL) or
    refuse a schema that is not this code's in one line saying to run ``billing migrate``.
    ``waits``: PostgreSQL going away in the middle (a restart) is waited out too, within the
    same ``BILLING_DB_WAIT_SECONDS``."""
    from service.db import engine as db_engine

    deadline = asyncio.get_running_loop().time() + (settings.database.wait_seconds if waits else 0)
    has_said = False
    while True:
        try:
            return await _prepare_once(settings, pool_max=pool_max, migrates=migrates, waits=waits)
        except Exception as error:
            is_gone = db_engine.is_connection_failure(error) or db_engine.is_unavailable(error)
            # A certificate refused is refused again: no wait (as in wait_until_reachable).
            if not is_gone or isinstance(error, ssl.SSLError):
                raise
            if asyncio.get_running_loop().time() >= deadline:
                raise
            if not has_said:
                _say_waiting(settings)(error)
                has_said = True
            if db_engine.has_current():
                await db_engine.current().close()
            await asyncio.sleep(0.5)


async def _prepare_once(
    settings: Settings, *, pool_max: int, migrates: bool, waits: bool
) -> Database:
    from service.catalog import store as catalog_store
    from service.db import engine as db_engine
    from service.db.migrate import SchemaMismatch, check_schema
    from service.db.migrate import migrate as apply_migrations
    from service.db.partitions import ensure_partitions

    if db_engine.has_current():
        database = db_engine.current()
    else:
        dsn, is_embedded = db_engine.resolve_dsn(settings)
        cache_size = settings.database.statement_cache_size
        # Reached before the engine is built (Piccolo's engine would only warn): an unreachable
        # database is one line, after the wait when the command waits.
        await db_engine.wait_until_reachable(
            db_engine.asyncpg_config(dsn, statement_cache_size=cache_size),
            seconds=settings.database.wait_seconds if waits else 0,
            on_wait=_say_waiting(settings),
        )
        if migrates:
            await db_engine.ensure_database_exists(dsn)
        database = db_engine.connect(dsn, is_embedded=is_embedded, statement_cache_size=cache_size)
    if migrates:
        await apply_migrations(database, shard_count=settings.database.citus_shard_count)
    else:
        try:
            await check_schema(database)
        except SchemaMismatch as mismatch:
            raise UserError(str(mismatch)) from None
    await database.start_pool(
        min_size=1,
        max_size=pool_max,
        acquire_timeout_seconds=settings.database.acquire_timeout_seconds,
        connect_timeout_seconds=settings.database.connect_timeout_seconds,
    )
    if migrates:
        await ensure_partitions(months_ahead=24)
    result = await catalog_store.publish_shipped()
    if result.published:
        console().print(
            "catalog published: "
            + ", ".join(f"{code} v{version}" for code, version in result.published)
        )
    return database


def _say_waiting(settings: Settings) -> Callable[[Exception], None]:
    def say(error: Exception) -> None:
        import structlog

        detail = f"{type(error).__name__}: {error}"
        console().print(
            f"waiting for the database (up to {settings.database.wait_seconds:g} s,"
            f" BILLING_DB_WAIT_SECONDS): {detail}",
            markup=False,
            highlight=False,
        )
        structlog.get_logger(__name__).info("database_waiting", error=detail)

    return say


def progress() -> Progress:
    """A rich progress bar on the console: description, bar, done of total, time taken."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
    )


def startup_warnings(settings: Settings) -> list[str]:
    """What is off, said once when a long-running process starts (``serve``, ``worker``)."""
    warnings = []
    if not settings.stripe.is_configured:
        warnings.append(
            "STRIPE_API_KEY is not set: nothing is sent to Stripe; pushes wait in the outbox"
        )
    if not settings.stripe.webhook_secret:
        warnings.append("STRIPE_WEBHOOK_SECRET is not set: every Stripe webhook is refused (400)")
    if settings.is_production and settings.allows_test_clocks:
        warnings.append("BILLING_ALLOW_TEST_CLOCKS=1: test clocks can be made in production")
    if settings.is_production and settings.outgoing.allows_private_addresses:
        warnings.append(
            "BILLING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1: webhook deliveries may reach private"
            " and loopback addresses"
        )
    if settings.is_production and not settings.seller.is_complete:
        warnings.append(
            "BILLING_SELLER_LEGAL_NAME, BILLING_SELLER_ADDRESS and BILLING_SELLER_TAX_ID are not"
            " all set: invoice documents lack the seller's legal details"
        )
    if settings.is_production and settings.database.is_embedded:
        warnings.append(
            "BILLING_ALLOW_EMBEDDED_DATABASE=1: production data is in the embedded PostgreSQL"
            f" at {settings.database.data_dir}"
        )
    return warnings
