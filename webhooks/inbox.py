"""The Stripe inbox: webhook events stored once as received, processed later by the worker.

``store`` is all the endpoint does after checking the signature: one ``INSERT ... ON CONFLICT
DO NOTHING`` on the Stripe event id, so a redelivery is a no-op. A signed event is never
refused for its content: one that cannot be processed (not readable JSON, nested too deep, a
NUL that jsonb cannot hold, a head out of range) is kept as the bytes Stripe signed and parked
with the reason (``store_unprocessable``), so it is visible and nothing is lost.
``process_pass`` claims due events oldest first (by Stripe's ``created``) with ``FOR UPDATE
SKIP LOCKED`` and runs each handler in the claim's transaction: the handler's writes and the
"processed" mark commit together. A handler that fails is retried with backoff; after
``MAX_ATTEMPTS`` the event is parked, visible in ``billing webhooks list`` and re-run with
``billing webhooks replay``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from service import wire
from service.db.coalescing import Coalescer
from service.db.engine import current as current_database
from service.db.engine import is_unavailable as is_database_unavailable
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


class Unprocessable(Exception):
    """A stored event whose content cannot be processed: it stays parked."""


MAX_DEPTH = 32
"""Stripe's events nest a dozen levels; deeper is parked, never handed to a handler."""
_INT64 = 2**63
_MAX_ID = 80


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
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as error:
        raise MalformedEvent(str(error) or type(error).__name__) from None


def _unprocessable_reason(payload: bytes) -> tuple[_EventHead, str] | _EventHead:
    """The event's head, or a stand-in head and why the event cannot be processed."""
    stand_in = _EventHead(
        id="unreadable_" + hashlib.sha256(payload).hexdigest()[:40], type="unknown", created=0
    )
    try:
        head = parse_head(payload)
    except MalformedEvent as error:
        return stand_in, f"not a Stripe event we can read: {error}"
    if not (0 < len(head.id) <= _MAX_ID and head.id.isprintable()):
        return stand_in, f"event id is not 1-{_MAX_ID} printable characters"
    if not (0 < len(head.type) <= _MAX_ID and head.type.isprintable()):
        head = _EventHead(id=head.id, type="unknown", created=0)
        return head, "event type is not a short printable name"
    if not -_INT64 <= head.created < _INT64:
        return _EventHead(id=head.id, type=head.type, created=0), (
            f"created {head.created} is beyond 64 bits"
        )
    try:
        document = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as error:
        return head, f"not JSON we can read: {error or type(error).__name__}"
    if wire.too_deep_at(document, MAX_DEPTH) is not None:
        return head, f"nested deeper than {MAX_DEPTH} levels"
    # jsonb refuses a NUL (anything else it refuses is found by the insert: _store_together).
    if b"\\u0000" in payload and (problem := wire.value_problem(document)) is not None:
        return head, f"holds text PostgreSQL cannot store: {problem}"
    return head


async def _store_together(_: None, batch: list[tuple[_EventHead, str]]) -> list[bool]:
    """Events that arrive while an insert is in flight share the next one (and its commit);
    for each, whether it was new."""
    try:
        rows = await current_database().pool.fetch(
            _STORE_MANY,
            [head.id for head, _ in batch],
            [head.type for head, _ in batch],
            [head.created for head, _ in batch],
            [payload for _, payload in batch],
        )
    except asyncpg.DataError:
        # One event PostgreSQL refuses (a number beyond numeric, say) must not fail the
        # neighbours that share its insert: each is stored alone, the refused one kept raw.
        return [await _store_alone(head, payload) for head, payload in batch]
    inserted = {row["event_id"] for row in rows}
    is_new = []
    for head, _ in batch:
        is_new.append(head.id in inserted)
        inserted.discard(head.id)  # the same event twice in one batch: once new
    return is_new


async def _store_alone(head: _EventHead, payload: str) -> bool:
    try:
        rows = await current_database().pool.fetch(
            _STORE_MANY, [head.id], [head.type], [head.created], [payload]
        )
    except asyncpg.DataError as error:
        reason = f"PostgreSQL cannot store it as JSON: {error}"
        return (await store_unprocessable(payload.encode(), head, reason))[1]
    return bool(rows)


_BATCH = 200
_writer: Coalescer[None, tuple[_EventHead, str], bool] = Coalescer(
    _store_together, max_batch=_BATCH
)


_STORE_UNPROCESSABLE = """
INSERT INTO stripe_inbox (event_id, event_type, event_created, payload, raw, status, last_error)
VALUES ($1, $2, $3, NULL, $4, 'parked', $5)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


async def store(payload: bytes) -> tuple[str, bool]:
    """Keep a verified event once, committed before this returns. Its id and whether it was
    new."""
    checked = _unprocessable_reason(payload)
    if isinstance(checked, tuple):
        return await store_unprocessable(payload, *checked)
    head = checked
    is_new = await _writer.submit(None, (head, payload.decode()))
    return head.id, is_new


async def store_unprocessable(payload: bytes, head: _EventHead, reason: str) -> tuple[str, bool]:
    """Keep a signed event that cannot be processed: its bytes, parked with ``reason``."""
    inserted = await current_database().pool.fetchval(
        _STORE_UNPROCESSABLE, head.id, head.type, head.created, payload, reason[:2000]
    )
    if inserted is not None:
        log.error("stripe_event_parked", event_id=head.id, event_type=head.type, error=reason[:300])
    return head.id, inserted is not None


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
            if claimed["payload"] is None:
                raise Unprocessable("kept as raw bytes only: its content cannot be processed")
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
        if claimed is None or is_database_unavailable(error):
            # The database went away: the handler's transaction is gone with it, and that is
            # no failure of the event's (it must not count towards parking it).
            raise
        return await _record_failure(claimed, error, now=now)


async def _record_failure(claimed: dict[str, Any], error: Exception, *, now: datetime) -> str:
    attempts = claimed["attempts"] + 1
    is_parked = isinstance(error, Unprocessable) or attempts >= (
        MAX_WAITS if isinstance(error, NotYet) else MAX_ATTEMPTS
    )
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
