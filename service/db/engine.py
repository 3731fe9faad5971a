"""Connecting to PostgreSQL: the embedded server or ``DATABASE_URL``, the Piccolo engine, the pool.

``connect(settings)`` is called once per process before any table is queried; the engine it
builds is what ``service.db.piccolo_conf`` hands to Piccolo (tables and migrations).

PostgreSQL may go away (a restart, a failover, a crash) and come back: the pool never waits for
a connection longer than its acquire timeout and never takes longer than its connect timeout to
open one, and `is_unavailable` tells such failures from bugs, so a request answers a 503 with
``Retry-After`` at once instead of hanging or failing with a 500. Nothing has to be restarted
when the server returns: a pool connection found closed is opened again on its next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from service.errors import DatabaseUnavailable
from service.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Database:
    dsn: str
    engine: Engine
    is_embedded: bool

    @property
    def pool(self) -> asyncpg.Pool:
        """The engine's asyncpg pool, for the few hot paths that speak SQL directly."""
        pool = self.engine.pool
        if pool is None:
            raise RuntimeError("database pool is not started: call start_pool() first")
        return pool

    async def start_pool(
        self,
        min_size: int = 2,
        max_size: int = 20,
        *,
        acquire_timeout_seconds: float = 5.0,
        connect_timeout_seconds: float = 5.0,
        connects_now: bool = True,
    ) -> None:
        """Start the engine's pool (see the module's docstring for the two timeouts).
        ``connects_now=False``: open no connection yet (each opens on first use), so a server
        starting while PostgreSQL restarts comes up all the same and answers 503 until it is
        back, instead of failing to start."""
        if self.engine.pool is None:
            config: dict[str, Any] = {**self.engine.config, "timeout": connect_timeout_seconds}
            self.engine.pool = await BoundedPool(
                acquire_timeout_seconds=acquire_timeout_seconds,
                # asyncpg opens init_size connections now and keeps min_size open.
                init_size=min_size if connects_now else 0,
                min_size=min_size if connects_now else 0,
                max_size=max_size,
                reset=_keep_session,
                **config,
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


class Transaction(PostgresTransaction):
    """Piccolo's transaction, safe when the connection dies under it. Piccolo's own exit rolls
    back (or commits) first and only then releases the connection and forgets the transaction;
    when the rollback itself fails (the server is gone) it does neither, and every later
    ``transaction()`` in the same task found the dead one still open and reused it ("connection
    has been released back to the pool"): a long-running worker never recovered. Here the
    transaction is always forgotten and its connection always let go, then the error raised."""

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent is not None:
            return bool(await super().__aexit__(exception_type, exception, traceback))
        try:
            return bool(await super().__aexit__(exception_type, exception, traceback))
        except BaseException:
            if self.engine.current_transaction.get() is self:
                self.engine.current_transaction.reset(self.context)
            await _let_go(self.engine.pool, self.connection)
            raise


async def _let_go(pool: asyncpg.Pool | None, connection: Any) -> None:
    """Give a connection back after a failure: released if it can be, else cut."""
    if pool is None:
        connection.terminate()
        return
    try:
        await asyncio.wait_for(pool.release(connection), timeout=5)
    except Exception:  # released already, broken, or stuck: cutting it frees its pool slot
        with contextlib.suppress(Exception):
            connection.terminate()


class Engine(PostgresEngine):
    """Piccolo's engine with `Transaction` as its transaction."""

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return Transaction(engine=self, allow_nested=allow_nested)


class BoundedPool(asyncpg.Pool):
    """asyncpg's pool with a default acquire timeout, whose failures to get a connection (none
    free in time, the server refusing or gone) are `DatabaseUnavailable`."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *, acquire_timeout_seconds: float, **options: Any) -> None:
        super().__init__(
            options.pop("dsn", None),
            connection_class=options.pop("connection_class", asyncpg.Connection),
            record_class=asyncpg.Record,
            max_queries=50_000,
            max_inactive_connection_lifetime=300.0,
            loop=None,
            **options,
        )
        self._acquire_timeout = acquire_timeout_seconds

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - asyncpg's
        seconds = self._acquire_timeout if timeout is None else timeout
        try:
            return await super()._acquire(seconds)  # type: ignore[misc]
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no database connection came free within {seconds:g} s: the service is busy or"
                " PostgreSQL is unreachable; send the request again shortly",
                retry_after=DatabaseUnavailable.retry_after_seconds,
            ) from None
        except Exception as error:
            if not is_connection_failure(error):
                raise
            raise DatabaseUnavailable(
                "the database cannot be reached just now (it may be restarting): nothing was"
                " done; send the request again shortly",
                retry_after=DatabaseUnavailable.retry_after_seconds,
            ) from error


def is_connection_failure(error: BaseException) -> bool:
    """Opening or using a connection failed because of the server or the network (any
    ``OSError`` counts: call it only on what came from the database)."""
    if isinstance(
        error,
        asyncpg.PostgresConnectionError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | OSError,  # refused, reset, no socket file, a connect timeout (TimeoutError)
    ):
        return True
    if isinstance(error, asyncpg.InternalClientError):
        # asyncpg's protocol found the connection in a state it cannot use: what an idle pool
        # connection is left in when its server process dies with a last message on it (seen
        # when PostgreSQL is killed); the socket's close follows, and the pool replaces it.
        return True
    # asyncpg's own words for a connection it found closed under an operation.
    return isinstance(error, asyncpg.InterfaceError) and "closed" in str(error)


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database is out of reach for now (a 503 and a retry), not a
    bug: what the pool raises (`DatabaseUnavailable`), and asyncpg's errors for a connection
    lost or refused in the middle of an operation. Other ``OSError``s (a file, a socket to
    Stripe) are not the database's and are left alone."""
    if isinstance(error, DatabaseUnavailable):
        return True
    return not isinstance(error, OSError) and is_connection_failure(error)


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
    engine = Engine(
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
