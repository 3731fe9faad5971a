"""The Stripe inbox: webhook events stored once as received, processed later by the worker.

``store`` is all the endpoint does after checking the signature: one ``INSERT ... ON CONFLICT
DO NOTHING`` on the Stripe event id, so a redelivery is a no-op. ``process_pass`` claims due
events oldest first (by Stripe's ``created``) with ``FOR UPDATE SKIP LOCKED`` and runs each
handler in the claim's transaction: the handler's writes and the "processed" mark commit
together. A handler that fails is retried with backoff; after ``MAX_ATTEMPTS`` the event is
parked, visible in ``billing webhooks list`` and re-run with ``billing webhooks replay``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import structlog

from service.db.coalescing import Coalescer
from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.db.tables import StripeInbox
from webhooks.handlers import HANDLERS, NotYet
from webhooks.outbox import backoff

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8
"""A handler that fails this many times is parked."""
MAX_WAITS = 24
"""An event waiting for another (``NotYet``) is parked after this many tries: with the
backoff capped at 15 minutes, two to four hours — Stripe redelivers for days, and a parked
event can be replayed."""


class _EventHead(msgspec.Struct):
    id: str
    type: str
    created: int


class MalformedEvent(ValueError):
    pass


# One statement for every event waiting to be stored: requests that arrive while an insert is
# in flight share the next one (and its commit), instead of a transaction each.
_STORE_MANY = """
INSERT INTO stripe_inbox (event_id, event_type, event_created, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::jsonb[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


def parse_head(payload: bytes) -> _EventHead:
    try:
        return msgspec.json.decode(payload, type=_EventHead)
    except msgspec.DecodeError as error:
        raise MalformedEvent(str(error)) from None


async def _store_together(_: None, batch: list[tuple[_EventHead, str]]) -> list[bool]:
    """Events that arrive while an insert is in flight share the next one (and its commit);
    for each, whether it was new."""
    rows = await current_database().pool.fetch(
        _STORE_MANY,
        [head.id for head, _ in batch],
        [head.type for head, _ in batch],
        [head.created for head, _ in batch],
        [payload for _, payload in batch],
    )
    inserted = {row["event_id"] for row in rows}
    is_new = []
    for head, _ in batch:
        is_new.append(head.id in inserted)
        inserted.discard(head.id)  # the same event twice in one batch: once new
    return is_new


_BATCH = 200
_writer: Coalescer[None, tuple[_EventHead, str], bool] = Coalescer(
    _store_together, max_batch=_BATCH
)


async def store(payload: bytes) -> tuple[str, bool]:
    """Keep a verified event once, committed before this returns. Its id and whether it was
    new."""
    head = parse_head(payload)
    is_new = await _writer.submit(None, (head, payload.decode()))
    return head.id, is_new


@dataclass
class ProcessSummary:
    processed: int = 0
    retrying: int = 0
    parked: int = 0


_CLAIM = """
SELECT id, event_id, event_type, event_created, payload, attempts
FROM stripe_inbox
WHERE status = 'pending' AND next_attempt_at <= $1
ORDER BY event_created, id
LIMIT 1
FOR UPDATE SKIP LOCKED
"""

_CLAIM_ONE = """
SELECT id, event_id, event_type, event_created, payload, attempts
FROM stripe_inbox WHERE event_id = $1
FOR UPDATE
"""

_DONE = """
UPDATE stripe_inbox SET status = 'processed', processed_at = $2, outcome = $3,
    attempts = attempts + 1, last_error = NULL
WHERE id = $1
"""

_FAILED = """
UPDATE stripe_inbox SET status = $2, attempts = attempts + 1, next_attempt_at = $3,
    last_error = $4
WHERE id = $1
"""


async def process_pass(
    *, now: datetime, limit: int = 1000, should_stop: Callable[[], bool] | None = None
) -> ProcessSummary:
    """Process due events, oldest first, until none is due (or ``limit``)."""
    summary = ProcessSummary()
    stop = should_stop or (lambda: False)
    for _ in range(limit):
        if stop():
            break
        outcome = await _process_next(now=now)
        if outcome is None:
            break
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary


async def _process_next(*, now: datetime, event_id: str | None = None) -> str | None:
    database = current_database()
    claimed: dict[str, Any] | None = None
    try:
        async with database.engine.transaction():
            connection = transaction_connection()
            record = (
                await connection.fetchrow(_CLAIM, now)
                if event_id is None
                else await connection.fetchrow(_CLAIM_ONE, event_id)
            )
            if record is None:
                return None
            claimed = dict(record)
            event = _json(claimed["payload"])
            handler = HANDLERS.get(claimed["event_type"])
            outcome = "not handled" if handler is None else await handler(event, now=now)
            await connection.execute(_DONE, claimed["id"], now, outcome[:200])
        log.info(
            "stripe_event_processed",
            event_id=claimed["event_id"],
            event_type=claimed["event_type"],
            outcome=outcome,
        )
        return "processed"
    except Exception as error:  # a handler's failure is recorded on its event, then retried
        if claimed is None:
            raise
        return await _record_failure(claimed, error, now=now)


async def _record_failure(claimed: dict[str, Any], error: Exception, *, now: datetime) -> str:
    attempts = claimed["attempts"] + 1
    is_parked = attempts >= (MAX_WAITS if isinstance(error, NotYet) else MAX_ATTEMPTS)
    status = "parked" if is_parked else "pending"
    detail = f"{type(error).__name__}: {error}"
    await current_database().pool.execute(
        _FAILED, claimed["id"], status, now + backoff(attempts), detail[:2000]
    )
    if is_parked:
        log.error(
            "stripe_event_parked",
            event_id=claimed["event_id"],
            event_type=claimed["event_type"],
            attempts=attempts,
            error=detail,
        )
        return "parked"
    level = log.info if isinstance(error, NotYet) else log.warning
    level(
        "stripe_event_retry",
        event_id=claimed["event_id"],
        event_type=claimed["event_type"],
        attempts=attempts,
        error=detail,
        exc_info=not isinstance(error, NotYet),
    )
    return "retrying"


async def replay(event_id: str, *, now: datetime) -> str | None:
    """Run one stored event's handler again, whatever its status (handlers are idempotent)."""
    exists = await StripeInbox.exists().where(StripeInbox.event_id == event_id)
    if not exists:
        return None
    await StripeInbox.update({StripeInbox.status: "pending", StripeInbox.attempts: 0}).where(
        StripeInbox.event_id == event_id
    )
    return await _process_next(now=now, event_id=event_id)


async def rows(*, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        StripeInbox.select(
            StripeInbox.event_id,
            StripeInbox.event_type,
            StripeInbox.event_created,
            StripeInbox.status,
            StripeInbox.attempts,
            StripeInbox.next_attempt_at,
            StripeInbox.last_error,
            StripeInbox.outcome,
        )
        .order_by(StripeInbox.id, ascending=False)
        .limit(limit)
    )
    if status is not None:
        query = query.where(StripeInbox.status == status)
    return await query


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)  # type: ignore[no-any-return]
    return dict(value)
