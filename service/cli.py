"""The ``billing`` command: serve the API, migrate, manage keys, and the commands added later."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table as RichTable

from service.catalog import store as catalog_store
from service.clock import SYSTEM_CLOCK
from service.db import engine as db_engine
from service.db.migrate import migrate as apply_migrations
from service.observability import logging as billing_logging
from service.settings import Settings
from service.tenancy import keys
from service.tenancy.principal import SYSTEM_ACTOR, Role

app = typer.Typer(
    help="Kefu Billing: the billing backend of the Kefu customer-service SaaS.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings.from_env()
    billing_logging.configure(log_format=settings.log_format, level=settings.log_level)
    return settings


def _run_with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Start or reach the database, apply migrations, run ``work``, close the pool."""

    async def runner() -> T:
        database = await prepare_database(settings)
        try:
            return await work()
        finally:
            await database.close()

    return asyncio.run(runner())


async def prepare_database(settings: Settings) -> db_engine.Database:
    """Connect (starting the embedded server if there is no ``DATABASE_URL``) and migrate."""
    if db_engine.has_current():
        database = db_engine.current()
    else:
        dsn, is_embedded = db_engine.resolve_dsn(settings)
        await db_engine.ensure_database_exists(dsn)
        database = db_engine.connect(dsn, is_embedded=is_embedded)
    await apply_migrations(database)
    await database.start_pool(min_size=1, max_size=4)
    result = await catalog_store.publish_shipped()
    if result.published:
        console.print(
            "catalog published: "
            + ", ".join(f"{code} v{version}" for code, version in result.published)
        )
    return database


async def ensure_operator_key() -> keys.IssuedKey | None:
    """On first start, mint an operator key so someone can use the API. ``None`` if one exists."""
    existing = [k for k in await keys.list_keys(None, operators=True) if k.revoked_at is None]
    if existing:
        return None
    async with db_engine.current().engine.transaction():
        return await keys.issue(
            role=Role.OPERATOR,
            merchant_id=None,
            scopes=None,
            name="first operator key",
            actor=SYSTEM_ACTOR,
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (BILLING_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (BILLING_PORT).")] = None,
) -> None:
    """Start the database if needed, migrate, then serve the API (docs at /schema)."""
    import uvicorn

    from service.app import create_app

    settings = _settings()
    host = host or settings.host
    port = port or settings.port

    async def first_start() -> keys.IssuedKey | None:
        return await ensure_operator_key()

    issued = _run_with_database(settings, first_start)
    base = f"http://{host}:{port}"
    if issued is not None:
        console.print(
            "[bold]First start: an operator API key was created. It is shown this once:[/bold]\n"
            f"  {issued.secret}\n"
            f"API docs: {base}/schema   (send the key as 'Authorization: Bearer <key>')"
        )
    else:
        console.print(f"API docs: {base}/schema")
    _exit_cleanly_on_signals()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


def _exit_cleanly_on_signals() -> None:
    """After its graceful shutdown uvicorn re-raises SIGTERM/SIGINT to the previous handler; make
    that handler a normal exit so exit hooks run (the embedded PostgreSQL is stopped by one)."""

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_now)
    signal.signal(signal.SIGINT, exit_now)


@app.command()
def migrate() -> None:
    """Apply database migrations (safe to run from several processes at once)."""
    settings = _settings()

    async def nothing() -> None:
        return None

    _run_with_database(settings, nothing)
    console.print("database is up to date")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="merchant or operator")] = "operator",
    merchant_id: Annotated[
        UUID | None, typer.Option(help="The merchant, for a merchant key.")
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="Repeat for each scope; default all.")
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key and print it once."""
    settings = _settings()

    async def work() -> keys.IssuedKey:
        async with db_engine.current().engine.transaction():
            return await keys.issue(
                role=Role(role),
                merchant_id=merchant_id,
                scopes=scope,
                name=name,
                actor=SYSTEM_ACTOR,
            )

    issued = _run_with_database(settings, work)
    console.print(
        f"key id {issued.row.id} ({issued.row.role}, scopes: {', '.join(issued.row.scopes)})"
    )
    console.print("The key, shown this once:")
    print(issued.secret)


@keys_app.command("list")
def keys_list(
    merchant_id: Annotated[
        UUID | None, typer.Option(help="A merchant's keys; default operator keys.")
    ] = None,
) -> None:
    """List keys (prefix, role, scopes, status); never the keys themselves."""
    settings = _settings()

    async def work() -> list[object]:
        return list(await keys.list_keys(merchant_id, operators=merchant_id is None))

    rows = _run_with_database(settings, work)
    table = RichTable("id", "prefix", "role", "merchant", "scopes", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row.id),
            row.prefix,
            row.role,
            str(row.merchant_id or "-"),
            ", ".join(row.scopes),
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: UUID) -> None:
    """Revoke a key: every process refuses it within a few seconds."""
    settings = _settings()

    async def work() -> None:
        async with db_engine.current().engine.transaction():
            await keys.revoke(key_id, merchant_id=None, actor=SYSTEM_ACTOR, now=SYSTEM_CLOCK.now())

    _run_with_database(settings, work)
    console.print(f"revoked {key_id}")


def main() -> None:
    app()
