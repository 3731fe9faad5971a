"""Connecting to PostgreSQL: the embedded server or ``DATABASE_URL``, the Piccolo engine, the pool.

``connect(settings)`` is called once per process before any table is queried; the engine it
builds is what ``service.db.piccolo_conf`` hands to Piccolo (tables and migrations).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from piccolo.engine.postgres import PostgresEngine

from service.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Database:
    dsn: str
    engine: PostgresEngine
    is_embedded: bool

    @property
    def pool(self) -> asyncpg.Pool:
        """The engine's asyncpg pool, for the few hot paths that speak SQL directly."""
        pool = self.engine.pool
        if pool is None:
            raise RuntimeError("database pool is not started: call start_pool() first")
        return pool

    async def start_pool(self, min_size: int = 2, max_size: int = 20) -> None:
        if self.engine.pool is None:
            await self.engine.start_connection_pool(
                min_size=min_size, max_size=max_size, reset=_keep_session
            )

    async def close(self, timeout_seconds: float = 10.0) -> None:
        """Close the pool; connections still held after the timeout are cut, so a process
        never hangs on its way out."""
        pool = self.engine.pool
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=timeout_seconds)
        except TimeoutError:
            log.warning("database_pool_close_timed_out", timeout_seconds=timeout_seconds)
            pool.terminate()
        self.engine.pool = None


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Released pool connections skip asyncpg's reset query (unlock, unlisten, RESET ALL): the
    service keeps no session state on them (advisory locks are transaction-scoped or taken on
    a dedicated connection), and the round trip showed on every request. An open transaction
    is still rolled back by asyncpg before this runs."""


_current: Database | None = None


def resolve_dsn(settings: Settings) -> tuple[str, bool]:
    """``DATABASE_URL`` as given, or the embedded server's (started if needed)."""
    if settings.database.url:
        return settings.database.url, False
    from service.db import embedded  # an optional extra: the container image leaves it out

    admin_dsn = embedded.start(settings.database.data_dir)
    return _with_database(admin_dsn, settings.database.database), True


async def wait_until_reachable(
    config: dict[str, object], *, seconds: float, on_wait: Callable[[Exception], None]
) -> None:
    """Return once the server answers (a database that does not exist yet counts: ``billing
    migrate`` creates it), retrying for up to ``seconds``: in a container stack or a cluster the
    service may start before PostgreSQL (or PgBouncer) does. ``on_wait`` hears the first
    failure; after ``seconds`` the last failure is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    has_waited = False
    while True:
        try:
            connection = await asyncpg.connect(**config, timeout=5)  # type: ignore[arg-type]
        except asyncpg.InvalidCatalogNameError:
            return
        except ssl.SSLError:  # a certificate refused is refused again: no wait
            raise
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError) as error:
            if loop.time() >= deadline:
                raise
            if not has_waited:
                on_wait(error)
                has_waited = True
            await asyncio.sleep(0.5)
        else:
            await connection.close()
            return


async def ensure_database_exists(dsn: str) -> None:
    """Create the target database if missing (the embedded server starts with ``postgres``).

    The target is tried first: a migrator that owns its database (``infra/sql/roles.sql``)
    needs no access to the ``postgres`` database."""
    name = urlsplit(dsn).path.lstrip("/")
    if not name or name == "postgres":
        return
    try:
        await (await asyncpg.connect(dsn)).close()
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        return
    admin = await asyncpg.connect(_with_database(dsn, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Identifiers cannot be parameters; the name comes from settings, quoted here.
            quoted = '"' + name.replace('"', '""') + '"'
            # Another process may create it between our check and our create.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f"CREATE DATABASE {quoted}")
    finally:
        await admin.close()


def connect(
    dsn: str, *, is_embedded: bool = False, statement_cache_size: int | None = None
) -> Database:
    """Build the Piccolo engine for ``dsn`` and make it the one every table uses.
    ``statement_cache_size``: see `asyncpg_config`."""
    engine = PostgresEngine(
        config=asyncpg_config(dsn, statement_cache_size=statement_cache_size), log_queries=False
    )
    return rebind(Database(dsn=dsn, engine=engine, is_embedded=is_embedded))


def rebind(database: Database) -> Database:
    """Make ``database`` the current one: every table and Piccolo's migrations use it."""
    global _current
    _current = database
    from piccolo.apps.migrations.tables import Migration

    from service.db import tables  # bind after the engine exists: Piccolo resolves it lazily

    for table in (*tables.ALL_TABLES, Migration):
        table._meta.db = database.engine
    return database


def current() -> Database:
    if _current is None:
        raise RuntimeError("no database: call service.db.engine.connect() first")
    return _current


def transaction_connection() -> asyncpg.Connection:
    """The connection of the Piccolo transaction this task is in, for hot paths that speak SQL
    directly (same transaction, no ORM overhead)."""
    transaction = current().engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("transaction_connection() needs an open engine.transaction()")
    return transaction.connection


def has_current() -> bool:
    return _current is not None


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def asyncpg_config(dsn: str, *, statement_cache_size: int | None = None) -> dict[str, object]:
    """The URL goes to asyncpg as written: it parses a socket ``host`` query, the password, the
    port (``?port=`` with a socket) and every other query parameter (``sslmode``,
    ``application_name``, ...) itself. Rewriting it here lost all but host, user and database.

    ``statement_cache_size`` (``BILLING_DB_STATEMENT_CACHE_SIZE``) is not a URL parameter: asyncpg
    would send an unknown query parameter to the server as a setting. 0 behind PgBouncer in
    transaction pooling, where a named prepared statement made in one transaction is gone (or
    another client's) in the next; ``None`` keeps asyncpg's default (100 per connection)."""
    config: dict[str, object] = {"dsn": dsn}
    if statement_cache_size is not None:
        config["statement_cache_size"] = statement_cache_size
    return config
