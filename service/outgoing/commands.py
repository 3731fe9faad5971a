"""``billing events``: what was sent to the platform's webhook endpoints, and sending an event
again. Imports nothing heavy until a command runs (``billing --help`` stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from service.command import UserError, console, run_with_database, settings

if TYPE_CHECKING:
    from service.outgoing.schemas import EventOut

events_app = typer.Typer(
    help="Outgoing webhooks: events sent to the platform's endpoints, and replays.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@events_app.command("list")
def events_list(
    merchant: Annotated[UUID | None, typer.Option(help="Only this merchant's events.")] = None,
    limit: Annotated[int, typer.Option(help="Events shown, newest first.")] = 50,
) -> None:
    """Events, newest first, with how their deliveries went."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    from service.outgoing import eventlog

    async def work() -> list[EventOut]:
        return await eventlog.events(merchant_id=merchant, limit=limit)

    rows = run_with_database(settings(), work)
    table = RichTable(title="Outgoing events")
    table.add_column("event", overflow="fold", min_width=36)  # whole: it is what replay takes
    for column in ("type", "merchant", "created", "deliveries"):
        table.add_column(column)
    for event in rows:
        table.add_row(
            str(event.id),
            escape(event.type),
            str(event.merchant_id)[:8],
            event.created.strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(f"{d.status} ({d.attempts})" for d in event.deliveries) or "none",
        )
    console().print(table)


@events_app.command("replay")
def events_replay(
    event_id: UUID,
    endpoint: Annotated[
        UUID | None, typer.Option(help="Only to this endpoint (default: every one it went to).")
    ] = None,
) -> None:
    """Send an event again, same id and body, as a new delivery to each live endpoint it went
    to, after what already waits there for its merchant. The worker sends it."""
    from service.errors import NotFound
    from service.outgoing import eventlog

    async def work() -> list[tuple[UUID, UUID]]:
        try:
            return await eventlog.replay(event_id, endpoint_id=endpoint)
        except NotFound as missing:
            raise UserError(missing.detail) from None

    made = run_with_database(settings(), work)
    if not made:
        console().print(f"{event_id}: no live endpoint to send it to", markup=False)
        raise typer.Exit(1)
    for delivery_id, endpoint_id in made:
        console().print(
            f"{event_id}: delivery {delivery_id} to endpoint {endpoint_id} queued",
            markup=False,
            highlight=False,
        )
