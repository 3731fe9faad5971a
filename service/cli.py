"""The ``billing`` command: serve the API, migrate, manage keys, and the commands added later."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table as RichTable

from plans.money import format_minor
from service.bench import close as _bench_close  # noqa: F401 - registers `bench close`
from service.bench import export as _bench_export  # noqa: F401 - registers `bench export`
from service.bench import webhooks as _bench_webhooks  # noqa: F401 - registers `bench webhooks`
from service.bench.usage import bench_app
from service.catalog import store as catalog_store
from service.clock import SYSTEM_CLOCK
from service.db import engine as db_engine
from service.db.migrate import migrate as apply_migrations
from service.observability import logging as billing_logging
from service.settings import Settings
from service.tenancy import keys
from service.tenancy.principal import SYSTEM_ACTOR, Role
from service.usage.partitions import ensure_partitions as ensure_usage_partitions
from webhooks.commands import outbox_app, webhooks_app

app = typer.Typer(
    help="Kefu Billing: the billing backend of the Kefu customer-service SaaS.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(bench_app, name="bench")
app.add_typer(outbox_app, name="outbox")
app.add_typer(webhooks_app, name="webhooks")
console = Console()

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings.from_env()
    billing_logging.configure(log_format=settings.log_format, level=settings.log_level)
    return settings


def _run_with_database(
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


async def prepare_database(settings: Settings, *, pool_max: int = 4) -> db_engine.Database:
    """Connect (starting the embedded server if there is no ``DATABASE_URL``) and migrate."""
    if db_engine.has_current():
        database = db_engine.current()
    else:
        dsn, is_embedded = db_engine.resolve_dsn(settings)
        await db_engine.ensure_database_exists(dsn)
        database = db_engine.connect(dsn, is_embedded=is_embedded)
    await apply_migrations(database)
    await database.start_pool(min_size=1, max_size=pool_max)
    await ensure_usage_partitions(months_ahead=24)
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


def _progress() -> Progress:
    """A rich progress bar on the console: description, bar, done of total, time taken."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
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


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 5.0,
    once: Annotated[bool, typer.Option(help="Run one pass and exit.")] = False,
) -> None:
    """Close ended periods into invoices, send the Stripe outbox, process Stripe webhooks.
    Safe to run several side by side; SIGTERM finishes the unit in hand and exits."""
    from service.worker import Worker

    settings = _settings()

    async def work() -> None:
        # `kill -USR1 <pid>` prints every task's stack: where a worker waits, if it ever does.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_task_stacks)
        runner = Worker(settings)
        if once:
            await runner.run_once()
        else:
            await runner.run(interval_seconds=interval)

    _run_with_database(settings, work, pool_max=settings.database.pool_max)


def _print_task_stacks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


@app.command("close-periods")
def close_periods(
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be invoiced; change nothing.")
    ] = False,
) -> None:
    """One close pass with a progress bar: every ended period past its grace window becomes
    exactly one invoice. Prints invoices made, totals and what was skipped and why."""
    from datetime import timedelta

    from service.invoicing import close

    settings = _settings()
    grace = timedelta(hours=settings.usage_grace_hours)

    async def work() -> close.CloseSummary:
        now = SYSTEM_CLOCK.now()
        with _progress() as progress:
            task = progress.add_task("closing periods", total=None)

            def on_progress(*, total: int | None = None, advance: int = 0) -> None:
                if total is not None:
                    progress.update(task, total=total)
                if advance:
                    progress.advance(task, advance)

            if not dry_run:
                return await close.run_pass(
                    system_now=now,
                    grace=grace,
                    tax_rate=settings.tax_rate,
                    merchant_id=merchant,
                    on_progress=on_progress,
                )
            summary = close.CloseSummary()
            period_ids = await close.due_period_ids(
                now, grace=grace, merchant_id=merchant, limit=1_000_000
            )
            on_progress(total=len(period_ids))
            previewed_lines: set[UUID] = set()
            for period_id in period_ids:
                preview = await close.preview_period(
                    period_id,
                    system_now=now,
                    tax_rate=settings.tax_rate,
                    previewed_lines=previewed_lines,
                )
                if preview is None:
                    summary.skip("taken by another worker or already invoiced")
                else:
                    total, currency = preview
                    summary.invoices_made += 1
                    summary.total_minor_by_currency[currency] = (
                        summary.total_minor_by_currency.get(currency, 0) + total
                    )
                on_progress(advance=1)
            return summary

    summary = _run_with_database(settings, work, pool_max=8)
    verb = "would make" if dry_run else "made"
    console.print(f"{verb} {summary.invoices_made} invoice(s)")
    for currency, total in sorted(summary.total_minor_by_currency.items()):
        console.print(f"  total {format_minor(total, currency)}")
    if summary.subscriptions_rolled:
        console.print(f"subscriptions brought up to date: {summary.subscriptions_rolled}")
    for reason, count in sorted(summary.skipped.items()):
        console.print(f"skipped {count}: {reason}")


@app.command("export")
def export_command(
    kind: Annotated[
        str,
        typer.Argument(
            help="invoices, invoice_lines, payments, refunds, usage, revenue, mrr, "
            "reconciliation, credit_balance"
        ),
    ],
    first_day: Annotated[str, typer.Option("--from", help="First accounting date, YYYY-MM-DD.")],
    last_day: Annotated[str, typer.Option("--to", help="Last accounting date (inclusive).")],
    out: Annotated[str, typer.Option("--out", help="The file to write.")],
    export_format: Annotated[str, typer.Option("--format", help="csv, parquet or xlsx.")] = "csv",
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of the accounting dates.")] = "Asia/Shanghai",
    bom: Annotated[bool, typer.Option("--bom", help="CSV: add the BOM Excel needs.")] = False,
) -> None:
    """Write a finance export to a file, streamed, with a progress bar."""
    from datetime import date

    from service.finance import exports

    try:
        request = exports.ExportRequest(
            kind=exports.ExportKind(kind),
            first_day=date.fromisoformat(first_day),
            last_day=date.fromisoformat(last_day),
            timezone=timezone,
            merchant_id=merchant,
            format=exports.ExportFormat(export_format),
            has_bom=bom,
        )
        request.check()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    settings = _settings()

    async def work() -> tuple[int, int]:
        total = await exports.count_rows(request)
        rows = 0
        with _progress() as progress:
            task = progress.add_task(f"exporting {kind}", total=total)

            def on_rows(count: int) -> None:
                nonlocal rows
                rows += count
                progress.advance(task, count)

            written = await exports.export_to_file(request, out, on_rows=on_rows)
        return rows, written

    rows, written = _run_with_database(settings, work)
    console.print(f"{rows:,} rows, {written:,} bytes → {out}")


@app.command("reconcile")
def reconcile_command(
    first_day: Annotated[str, typer.Option("--from", help="First accounting date, YYYY-MM-DD.")],
    last_day: Annotated[str, typer.Option("--to", help="Last accounting date (inclusive).")],
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of the accounting dates.")] = "Asia/Shanghai",
) -> None:
    """Reconcile this ledger against Stripe (needs STRIPE_API_KEY); store and print the run."""
    from datetime import date

    from service.finance import reconcile
    from webhooks.gateway import Gateway
    from webhooks.reconcile_source import StripeLedgerSource

    settings = _settings()
    if not settings.stripe.is_configured:
        raise typer.BadParameter("no STRIPE_API_KEY: there is no Stripe side to reconcile with")
    source = StripeLedgerSource(Gateway.from_settings(settings.stripe))

    async def work() -> dict[str, object]:
        with console.status("reading this ledger and Stripe"):
            result = await reconcile.run(
                source,
                first_day=date.fromisoformat(first_day),
                last_day=date.fromisoformat(last_day),
                timezone=timezone,
                merchant_ids=[merchant] if merchant else None,
            )
        return await reconcile.store(result, now=SYSTEM_CLOCK.now())

    print_reconciliation(_run_with_database(settings, work))


def print_reconciliation(run: dict[str, object]) -> None:
    from service.finance.printing import print_reconciliation as print_run

    print_run(console, run)


@app.command()
def demo() -> None:
    """Three merchants (basic, advanced, custom) through two simulated months on a test
    clock: signup, orders and GMV, an SLA report, an upgrade, a late event, period close; then
    every invoice, line by line."""
    from service.app import create_app
    from service.demo import print_invoices
    from service.demo import run as run_demo

    settings = _settings()

    async def work() -> list[dict[str, object]]:
        from webhooks.demo import run as run_with_stripe  # the stand-in when no Stripe key

        return await run_with_stripe(settings, console, run_demo, create_app, print_invoices)

    _run_with_database(settings, work, pool_max=8)


def main() -> None:
    app()
