"""The ``billing`` command: serve the API, run the worker, migrate, manage keys, close periods,
export, reconcile, the demo and the benchmarks.

Nothing heavy is imported at module level (each command imports what it uses), so
``billing --help`` and ``billing COMMAND --help`` answer at once. A mistake of the person at the
terminal is one line on stderr and a non-zero exit, never a traceback (see ``main``).
"""

from __future__ import annotations

import signal
import ssl
import sys
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from service.bench import close as _bench_close  # noqa: F401 - registers `bench close`
from service.bench import export as _bench_export  # noqa: F401 - registers `bench export`
from service.bench import neighbours as _bench_neighbours  # noqa: F401 - `bench neighbours`
from service.bench import overload as _bench_overload  # noqa: F401 - `bench overload`
from service.bench import webhooks as _bench_webhooks  # noqa: F401 - registers `bench webhooks`
from service.bench.gauntlet import command as _bench_gauntlet  # noqa: F401 - `bench gauntlet`
from service.bench.usage import bench_app
from service.command import UserError, console, run_with_database, startup_warnings
from service.command import settings as load_settings
from service.finance.export_kinds import ExportFormat, ExportKind
from service.outgoing.commands import events_app
from service.settings import Settings
from service.tenancy.principal import LEAST_SCOPES, KeyScope, Role
from webhooks.commands import outbox_app, webhooks_app

if TYPE_CHECKING:
    from service.tenancy import keys

app = typer.Typer(
    help="Kefu Billing: the billing backend of the Kefu customer-service SaaS.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(
    help="Create, list and revoke API keys. Lost every operator key? "
    "`billing keys create --role operator --all-scopes` makes a new one.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(keys_app, name="keys")
app.add_typer(bench_app, name="bench")
app.add_typer(outbox_app, name="outbox")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(events_app, name="events")

# Dates typed as YYYY-MM-DD: a wrong one is refused before anything starts.
FromDay = Annotated[
    datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First accounting date.")
]
ToDay = Annotated[
    datetime,
    typer.Option("--to", formats=["%Y-%m-%d"], help="Last accounting date (inclusive)."),
]


async def ensure_operator_key(*, mints: bool = True) -> keys.IssuedKey | None:
    """On first start, mint an operator key so someone can use the API. ``None`` if one exists,
    or if none exists and ``mints`` is off (production: a key printed by a server lands in its
    log, and each replica would print its own); the caller says how to make one."""
    from service.db import engine as db_engine
    from service.tenancy import keys
    from service.tenancy.principal import SYSTEM_ACTOR

    existing = [k for k in await keys.list_keys(None, operators=True) if k.revoked_at is None]
    if existing:
        return None
    if not mints:
        console().print(
            "warning: no operator API key yet: make one with"
            " `billing keys create --role operator --all-scopes` (shown once, never logged)",
            markup=False,
            highlight=False,
        )
        return None
    async with db_engine.current().engine.transaction():
        return await keys.issue(
            role=Role.OPERATOR,
            merchant_id=None,
            scopes=None,
            name="first operator key",
            actor=SYSTEM_ACTOR,
        )


def _warn_about_what_is_off(settings: Settings) -> None:
    import structlog

    for warning in startup_warnings(settings):
        console().print(f"warning: {warning}", markup=False, highlight=False)
        structlog.get_logger(__name__).warning("setting_off", detail=warning)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (BILLING_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (BILLING_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes serving the API on the one port (for hosts with several cores);"
            " each has its own pool of up to BILLING_DB_POOL_MAX connections.",
        ),
    ] = 1,
) -> None:
    """Serve the API (docs at /schema) on a database `billing migrate` has brought up to date
    (a schema behind or ahead of this code is refused); serve changes no table's shape. Without
    DATABASE_URL it starts the embedded PostgreSQL (`make run` migrates it first)."""
    import uvicorn

    from service.app import create_app
    from service.http_protocol import OneWriteHttpToolsProtocol

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    settings = settings.served_at(host, port)  # payment links name where it listens

    async def first_key() -> keys.IssuedKey | None:
        return await ensure_operator_key(mints=not settings.is_production)

    issued = run_with_database(settings, first_key, waits=True, retries_work=True)
    base = f"http://{host}:{port}"
    if issued is not None:
        console().print(
            "[bold]First start: an operator API key was created. It is shown this once:[/bold]\n"
            f"  {issued.secret}\n"
            f"API docs: {base}/schema   (send the key as 'Authorization: Bearer <key>')\n"
            "Lost it? `.venv/bin/billing keys create --role operator --all-scopes` makes another."
        )
    else:
        console().print(f"API docs: {base}/schema")
    _warn_about_what_is_off(settings)
    _exit_cleanly_on_signals()
    # SIGTERM: uvicorn stops accepting connections, closes idle ones, lets the requests in
    # flight finish (each connection closes after its answer), then the pool closes.
    grace = settings.capacity.shutdown_grace_seconds
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=grace,
            http=OneWriteHttpToolsProtocol,
        )
        return
    # uvicorn's own workers: each process builds the app from the same environment and opens
    # its own pool; the parent only watches them (and restarts one that dies).
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=grace,
        http=OneWriteHttpToolsProtocol,
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
    """Create the database if missing, apply migrations and make the monthly partitions ahead:
    the only command that changes the schema (safe from several processes at once). Run it as
    the migrator role, straight to PostgreSQL (its lock is a session lock: not via PgBouncer)."""
    settings = load_settings()

    async def nothing() -> None:
        return None

    run_with_database(settings, nothing, migrates=True, waits=True)
    console().print("database is up to date")


@app.command()
def partitions() -> None:
    """Make the monthly partitions two years ahead and drop audit-log months past retention
    (BILLING_RETAIN_AUDIT_MONTHS). Changes the schema: run it as the migrator role, daily (the
    CronJob in infra/k8s does)."""
    from service import retention
    from service.clock import SYSTEM_CLOCK
    from service.db.partitions import ensure_partitions

    settings = load_settings()

    async def work() -> tuple[list[str], int]:
        created = await ensure_partitions(months_ahead=24)
        dropped = await retention.drop_expired_audit_months(
            settings.retention, now=SYSTEM_CLOCK.now()
        )
        return created, dropped.total

    created, dropped = run_with_database(settings, work, waits=True, retries_work=True)
    out = console()
    out.print(f"partitions made: {len(created)}", markup=False, highlight=False)
    out.print(f"audit entries dropped with their months: {dropped}", markup=False)


@keys_app.command("create")
def keys_create(
    role: Annotated[
        Role, typer.Option(help="merchant (acts for one merchant) or operator (staff, tools).")
    ],
    merchant_id: Annotated[
        UUID | None, typer.Option(help="The merchant, for a merchant key.")
    ] = None,
    scope: Annotated[
        list[KeyScope] | None,
        typer.Option(help="A scope to grant; repeat for several. Default: the role's least."),
    ] = None,
    all_scopes: Annotated[
        bool, typer.Option("--all-scopes", help="Every scope the role can hold.")
    ] = False,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key and print it once. Without --scope or --all-scopes the key gets the
    least its role holds (billing:read) and says so. The way back in when every operator key
    is lost: `billing keys create --role operator --all-scopes` (needs database access)."""
    if role is Role.MERCHANT and merchant_id is None:
        raise UserError("a merchant key needs --merchant-id (the merchant's id)", exit_code=2)
    if role is Role.OPERATOR and merchant_id is not None:
        raise UserError("an operator key belongs to no merchant: drop --merchant-id", exit_code=2)
    if scope and all_scopes:
        raise UserError("give --scope or --all-scopes, not both", exit_code=2)
    scopes: list[str] | None
    if all_scopes:
        scopes = None  # every scope of the role
    elif scope:
        scopes = [s.value for s in scope]
    else:
        scopes = [s.value for s in LEAST_SCOPES[role]]
    settings = load_settings()

    async def work() -> keys.IssuedKey:
        from service.db import engine as db_engine
        from service.tenancy import keys
        from service.tenancy.principal import SYSTEM_ACTOR

        async with db_engine.current().engine.transaction():
            return await keys.issue(
                role=role, merchant_id=merchant_id, scopes=scopes, name=name, actor=SYSTEM_ACTOR
            )

    issued = run_with_database(settings, work)
    how = (
        "every scope of its role"
        if all_scopes
        else "the scopes asked for"
        if scope
        else "the least of its role; add --scope S (repeatable) or --all-scopes for more"
    )
    out = console()
    out.print(f"made {role.value} key {issued.row.id}", markup=False, highlight=False)
    out.print(f"scopes: {', '.join(issued.row.scopes)} ({how})", markup=False, highlight=False)
    out.print("The key, shown this once:", markup=False)
    print(issued.secret)


@keys_app.command("list")
def keys_list(
    merchant_id: Annotated[
        UUID | None, typer.Option(help="A merchant's keys; default operator keys.")
    ] = None,
) -> None:
    """List keys (prefix, role, scopes, status); never the keys themselves."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    from service.tenancy import keys

    settings = load_settings()

    async def work() -> list[object]:
        return list(await keys.list_keys(merchant_id, operators=merchant_id is None))

    rows = run_with_database(settings, work)
    table = RichTable("id", "prefix", "name", "role", "merchant", "scopes", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row.id),
            escape(row.prefix),
            escape(row.name),
            row.role,
            str(row.merchant_id or "-"),
            ", ".join(row.scopes),
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-",
        )
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: UUID) -> None:
    """Revoke a key: every process refuses it within a few seconds."""
    settings = load_settings()

    async def work() -> None:
        from service.clock import SYSTEM_CLOCK
        from service.db import engine as db_engine
        from service.tenancy import keys
        from service.tenancy.principal import SYSTEM_ACTOR

        async with db_engine.current().engine.transaction():
            await keys.revoke(key_id, merchant_id=None, actor=SYSTEM_ACTOR, now=SYSTEM_CLOCK.now())

    run_with_database(settings, work)
    console().print(f"revoked {key_id}")


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 5.0,
    once: Annotated[
        bool, typer.Option("--once", help="Run one pass, say what it did, exit.")
    ] = False,
) -> None:
    """Close ended periods into invoices, send the Stripe outbox, process Stripe webhooks.
    Safe to run several side by side; SIGTERM finishes the unit in hand and exits."""
    import asyncio

    from service.worker import PassReport, Worker

    settings = load_settings()
    _warn_about_what_is_off(settings)

    async def work() -> PassReport | None:
        # `kill -USR1 <pid>` prints every task's stack: where a worker waits, if it ever does.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_task_stacks)
        runner = Worker(settings)
        if once:
            try:
                return await runner.run_once()
            finally:
                await runner.close()
        await runner.run(interval_seconds=interval)
        return None

    report = run_with_database(settings, work, pool_max=settings.database.pool_max, waits=True)
    if report is not None:
        for line in report.lines():
            console().print(line, markup=False, highlight=False)


def _print_task_stacks() -> None:
    import asyncio

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
    exactly one invoice. Prints each invoice made (or, with --dry-run, that it would make: the
    same pass, rolled back), totals, and each period skipped with the reason."""
    from datetime import timedelta

    from service.clock import SYSTEM_CLOCK
    from service.command import progress
    from service.invoicing import close_report

    settings = load_settings()

    async def work() -> close_report.Report:
        with progress() as bar:
            task = bar.add_task("previewing" if dry_run else "closing periods", total=None)

            def on_progress(*, total: int | None = None, advance: int = 0) -> None:
                if total is not None:
                    bar.update(task, total=total)
                if advance:
                    bar.advance(task, advance)

            return await close_report.close_periods(
                system_now=SYSTEM_CLOCK.now(),
                grace=timedelta(hours=settings.usage_grace_hours),
                tax_rate=settings.tax_rate,
                merchant_id=merchant,
                dry_run=dry_run,
                on_progress=on_progress,
            )

    out = console()
    for line in close_report.render(run_with_database(settings, work, pool_max=8)):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _checked_zone(timezone: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(
            f"{timezone!r} is not a time zone (try Asia/Shanghai or UTC)", param_hint="--timezone"
        ) from None
    return timezone


def _date_range(first_day: datetime, last_day: datetime) -> tuple[date, date]:
    if last_day < first_day:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    return first_day.date(), last_day.date()


@app.command("export")
def export_command(
    kind: Annotated[ExportKind, typer.Argument(help="What to export.")],
    first_day: FromDay,
    last_day: ToDay,
    out: Annotated[str, typer.Option("--out", help="The file to write.")],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="The file's format.")
    ] = ExportFormat.CSV,
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of the accounting dates.")] = "Asia/Shanghai",
    bom: Annotated[bool, typer.Option("--bom", help="CSV: add the BOM Excel needs.")] = False,
    include_test: Annotated[
        bool,
        typer.Option(
            "--include-test", help="Also test merchants (on a test clock), left out by default."
        ),
    ] = False,
) -> None:
    """Write a finance export to a file, streamed, with a progress bar."""
    from service.command import progress
    from service.finance import exports

    first, last = _date_range(first_day, last_day)
    try:
        request = exports.ExportRequest(
            kind=kind,
            first_day=first,
            last_day=last,
            timezone=_checked_zone(timezone),
            merchant_id=merchant,
            format=export_format,
            has_bom=bom,
            includes_test=include_test,
        )
        request.check()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    settings = load_settings()

    async def work() -> tuple[int, int]:
        total = await exports.count_rows(request)
        rows = 0
        with progress() as bar:
            task = bar.add_task(f"exporting {kind.value}", total=total)

            def on_rows(count: int) -> None:
                nonlocal rows
                rows += count
                bar.advance(task, count)

            written = await exports.export_to_file(request, out, on_rows=on_rows)
        return rows, written

    rows, written = run_with_database(settings, work)
    console().print(f"{rows:,} rows, {written:,} bytes → {out}", markup=False, highlight=False)


@app.command("reconcile")
def reconcile_command(
    first_day: FromDay,
    last_day: ToDay,
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of the accounting dates.")] = "Asia/Shanghai",
) -> None:
    """Reconcile this ledger against Stripe (needs STRIPE_API_KEY); store and print the run."""
    first, last = _date_range(first_day, last_day)
    timezone = _checked_zone(timezone)
    settings = load_settings()
    if not settings.stripe.is_configured:
        raise UserError("no STRIPE_API_KEY: there is no Stripe side to reconcile with")

    from service.clock import SYSTEM_CLOCK
    from service.finance import reconcile
    from service.finance.printing import print_reconciliation
    from webhooks.gateway import Gateway
    from webhooks.reconcile_source import StripeLedgerSource

    source = StripeLedgerSource(Gateway.from_settings(settings.stripe))

    async def work() -> dict[str, object]:
        with console().status("reading this ledger and Stripe"):
            result = await reconcile.run(
                source,
                first_day=first,
                last_day=last,
                timezone=timezone,
                merchant_ids=[merchant] if merchant else None,
            )
        return await reconcile.store(result, now=SYSTEM_CLOCK.now())

    print_reconciliation(console(), run_with_database(settings, work))


@app.command()
def demo(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show the service's log lines too.")
    ] = False,
) -> None:
    """Three merchants (basic, advanced, custom) through two simulated months on a test
    clock, against a local Stripe stand-in: signup, orders and GMV, an SLA report, an upgrade,
    a late event, period close, payment, a refund, reconciliation; then every invoice, line by
    line. It runs in a throw-away PostgreSQL of its own: your database, keys, Stripe and catalog
    mapping are never touched."""
    from service.demo import run_isolated

    settings = load_settings(log_level=None if verbose else "CRITICAL")
    run_isolated(settings, console(), verbose=verbose)


def main() -> None:
    """Run the command; a user's mistake is one line on stderr and a non-zero exit."""
    # typer 0.29 carries its own copy of click: its parse errors are defined there.
    from typer._click import exceptions as parse_errors

    try:
        result = app(standalone_mode=False)
    except parse_errors.NoArgsIsHelpError as shown:
        shown.show()
        sys.exit(shown.exit_code)
    except parse_errors.UsageError as error:
        path = error.ctx.command_path if error.ctx is not None else "billing"
        message = " ".join(error.format_message().split()).replace("Value error, ", "")
        _fail(f"{path}: {message} (see {path} --help)", 2)
    except typer.TyperException as error:
        _fail(" ".join(error.format_message().split()), error.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except UserError as error:
        _fail(str(error), error.exit_code)
    except Exception as error:
        message = _user_error_message(error)
        if message is None:
            raise
        _fail(message, 1)
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, exit_code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def _user_error_message(error: Exception) -> str | None:
    """What to say when ``error`` is the user's to fix (a setting, a refused value, an
    unreachable database); ``None`` for a bug, which keeps its traceback."""
    from service.settings import SettingsError

    if isinstance(error, SettingsError):
        return str(error)
    if "service.db.migrate" in sys.modules:
        from service.db.migrate import MigrationFailed

        if isinstance(error, MigrationFailed):
            return str(error)
    if "service.errors" in sys.modules:
        from service.errors import BillingError

        if isinstance(error, BillingError):
            return error.detail
    if "asyncpg" in sys.modules:
        import asyncpg

        if isinstance(
            error,
            asyncpg.InvalidAuthorizationSpecificationError
            | asyncpg.InvalidPasswordError
            | asyncpg.InvalidCatalogNameError,
        ):
            return f"cannot use the database: {error} (check DATABASE_URL)"
        if isinstance(error, asyncpg.InsufficientPrivilegeError):
            return (
                f"the database refused: {error} (`billing migrate` and `billing partitions` need"
                " the migrator role, which owns the schema; see infra/sql/roles.sql)"
            )
    if isinstance(error, ssl.SSLError):
        return (
            f"cannot reach the database securely: {error} (check DATABASE_URL's sslmode and"
            " sslrootcert, the CA that signed the server's certificate)"
        )
    if isinstance(error, ConnectionError | TimeoutError):
        return f"cannot reach the database: {error} (check DATABASE_URL)"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror}: {error.filename}"
    return None
