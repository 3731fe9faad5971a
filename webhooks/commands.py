"""``billing outbox`` and ``billing webhooks``: see what waits to go to Stripe and what Stripe
sent; put a parked push back in line, skip it (with a reason) or resolve it (record what exists
in Stripe); re-run one event. Skips and resolutions are audit entries."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import typer

from service.command import UserError, console, run_with_database, settings
from service.tenancy.platform import is_platform

outbox_app = typer.Typer(
    help="The Stripe outbox: pushes waiting, sent or parked.",
    invoke_without_command=True,
    rich_markup_mode=None,
)
webhooks_app = typer.Typer(
    help="The Stripe inbox: webhook events received.", no_args_is_help=True, rich_markup_mode=None
)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    PARKED = "parked"
    SKIPPED = "skipped"
    RESOLVED = "resolved"


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    PARKED = "parked"


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    status: Annotated[
        OutboxStatus | None, typer.Option(help="Only these rows (default: all but sent).")
    ] = None,
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown.")] = 50,
) -> None:
    """List outbox rows. Without a Stripe key configured, pending rows wait (shown as such).
    A parked row shows why, and what it made in Stripe already; rows behind it about the same
    thing (the same invoice; everything, for the customer's creation) wait for it, others go
    on."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape
    from rich.table import Table as RichTable

    from service import stripe_outbox

    found = settings()

    async def work() -> list[dict[str, Any]]:
        return await stripe_outbox.rows(
            status=status.value if status else None, merchant_id=merchant, limit=limit
        )

    rows = run_with_database(found, work)
    is_waiting = not found.stripe.is_configured
    table = RichTable(
        title="Stripe outbox" + (" — no STRIPE_API_KEY: waiting" if is_waiting else "")
    )
    for column in ("id", "merchant", "command", "status", "attempts", "next attempt (UTC)"):
        table.add_column(column)
    table.add_column("error / resolution", overflow="fold", min_width=30)
    table.add_column("made in Stripe", overflow="fold")
    for row in rows:
        state = row["status"]
        if is_waiting and state == "pending":
            state = "waiting"
        table.add_row(
            str(row["id"]),
            "catalog" if is_platform(row["merchant_id"]) else str(row["merchant_id"])[:8],
            row["command"],
            state,
            str(row["attempts"]),
            _next_attempt(row),
            escape(row["resolution"] or row["last_error"] or ""),
            escape(_made(row["stripe_ids"])),
        )
    console().print(table)
    console().print(f"{len(rows)} row(s)")


def _made(stripe_ids: Any) -> str:
    import msgspec

    ids = msgspec.json.decode(stripe_ids) if isinstance(stripe_ids, str | bytes) else stripe_ids
    return ", ".join(f"{kind} {value}" for kind, value in (ids or {}).items() if value)


def _next_attempt(row: dict[str, Any]) -> str:
    """When the row goes (again): its next attempt, or for one in flight the end of its lease
    (a worker that died leaves it in flight; another takes it then)."""
    if row["status"] in ("sent", "skipped", "resolved"):
        return ""
    if row["status"] == "in_flight" and row["lease_until"] is not None:
        return "lease until " + row["lease_until"].strftime("%Y-%m-%d %H:%M:%S")
    return str(row["next_attempt_at"].strftime("%Y-%m-%d %H:%M:%S"))


@outbox_app.command("retry")
def outbox_retry(outbox_id: int) -> None:
    """Put a parked row back in line (once what Stripe refused has been fixed)."""
    from service import stripe_outbox

    async def work() -> bool:
        return await stripe_outbox.requeue(outbox_id, now=datetime.now(UTC))

    if not run_with_database(settings(), work):
        console().print(f"outbox row {outbox_id} is not parked")
        raise typer.Exit(1)
    console().print(f"outbox row {outbox_id} is pending again")


@outbox_app.command("skip")
def outbox_skip(
    outbox_id: int,
    reason: Annotated[
        str, typer.Option(help="Why it is not sent (kept with the row and in the audit log).")
    ],
) -> None:
    """Never send a parked row: what it was to do was done otherwise (a refund paid by bank
    transfer, ...) or is not wanted. The rows waiting behind it go on. Audited."""
    from service import stripe_outbox
    from service.tenancy.principal import COMMAND_LINE_ACTOR

    if not reason.strip():
        raise UserError("--reason must say why", exit_code=2)

    async def work() -> bool:
        return await stripe_outbox.skip(
            outbox_id, reason=reason, actor=COMMAND_LINE_ACTOR, now=datetime.now(UTC)
        )

    if not run_with_database(settings(), work):
        raise UserError(f"outbox row {outbox_id} is not parked: only a parked row is skipped")
    console().print(f"outbox row {outbox_id} skipped", markup=False)


@outbox_app.command("resolve")
def outbox_resolve(
    outbox_id: int,
    reason: Annotated[
        str, typer.Option(help="What was done by hand (kept with the row and in the audit log).")
    ],
) -> None:
    """A parked row's work is done in Stripe (by hand, or by an earlier attempt): look it up in
    Stripe by our ids, record it here, and mark the row resolved. Makes nothing in Stripe; when
    Stripe lacks something, says what and leaves the row parked. Audited."""
    from service.tenancy.principal import COMMAND_LINE_ACTOR
    from webhooks import outbox
    from webhooks.gateway import Gateway

    if not reason.strip():
        raise UserError("--reason must say what was done", exit_code=2)
    found = settings()
    if not found.stripe.is_configured:
        raise UserError("resolving reads Stripe: set STRIPE_API_KEY (and STRIPE_API_BASE if any)")

    async def work() -> dict[str, Any]:
        gateway = Gateway.from_settings(found.stripe)
        try:
            return await outbox.resolve(
                gateway, outbox_id, reason=reason, actor=COMMAND_LINE_ACTOR, now=datetime.now(UTC)
            )
        except outbox.NotResolved as error:
            raise UserError(str(error)) from None

    recorded = run_with_database(found, work)
    made = _made(recorded) or "nothing more"
    console().print(f"outbox row {outbox_id} resolved; recorded: {made}", markup=False)


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[
        InboxStatus | None, typer.Option(help="Only these events (default: all).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown, newest first.")] = 50,
) -> None:
    """Webhook events received, newest first, with what processing them did."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    from webhooks import inbox

    async def work() -> list[dict[str, Any]]:
        return await inbox.rows(status=status.value if status else None, limit=limit)

    rows = run_with_database(settings(), work)
    table = RichTable(title="Stripe inbox")
    table.add_column("event", overflow="fold", min_width=30)  # whole: it is what replay takes
    for column in ("type", "status", "attempts", "outcome / error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row["event_id"]),
            escape(row["event_type"]),
            row["status"],
            str(row["attempts"]),
            escape((row["last_error"] or row["outcome"] or "")[:70]),
        )
    console().print(table)


@webhooks_app.command("replay")
def webhooks_replay(event_id: str) -> None:
    """Process one stored event again (a parked one, or any: handlers are idempotent)."""
    from webhooks import inbox

    async def work() -> str | None:
        return await inbox.replay(event_id, now=datetime.now(UTC))

    outcome = run_with_database(settings(), work)
    if outcome is None:
        console().print(f"no stored event {event_id}", markup=False)
        raise typer.Exit(1)
    console().print(f"{event_id}: {outcome}", markup=False, highlight=False)
    if outcome != "processed":
        raise typer.Exit(1)
