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

    found = Settings.from_env()
    billing_logging.configure(log_format=found.log_format, level=log_level or found.log_level)
    return found


def run_with_database(
    settings: Settings, work: Callable[[], Awaitable[T]], *, pool_max: int = 4
) -> T:
    """Start or reach the database, apply migrations, run ``work``, close the pool."""

    async def runner() -> T:
        database = await prepare_database(settings, pool_max=pool_max)
        try:
            return await work()
        finally:
            await database.close()

    return asyncio.run(runner())


async def prepare_database(settings: Settings, *, pool_max: int = 4) -> Database:
    """Connect (starting the embedded server if there is no ``DATABASE_URL``) and migrate."""
    from service.catalog import store as catalog_store
    from service.db import engine as db_engine
    from service.db.migrate import migrate as apply_migrations
    from service.db.partitions import ensure_partitions

    if db_engine.has_current():
        database = db_engine.current()
    else:
        dsn, is_embedded = db_engine.resolve_dsn(settings)
        await db_engine.ensure_database_exists(dsn)
        database = db_engine.connect(dsn, is_embedded=is_embedded)
    await apply_migrations(database)
    await database.start_pool(min_size=1, max_size=pool_max)
    await ensure_partitions(months_ahead=24)
    result = await catalog_store.publish_shipped()
    if result.published:
        console().print(
            "catalog published: "
            + ", ".join(f"{code} v{version}" for code, version in result.published)
        )
    return database


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
    if settings.is_production and settings.database.is_embedded:
        warnings.append(
            "BILLING_ALLOW_EMBEDDED_DATABASE=1: production data is in the embedded PostgreSQL"
            f" at {settings.database.data_dir}"
        )
    return warnings
