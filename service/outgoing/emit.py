"""Emitting events: each is written in the transaction of the change that causes it, with one
delivery per endpoint that wants it, or not at all.

The domain calls one function per fact (`subscription_recorded`, `invoice_finalized`, ...), one
line where the fact happens. An event carries a stable id, its type, when it happened (UTC,
``Z``), the API's version (``service.openapi.API_VERSION``) and the object as the API answers
it. Its JSON is fixed here, once: every delivery and replay sends the same bytes.

With no endpoint wanting the type for that merchant, nothing is built or written (one indexed
read of the few endpoint rows): an installation without webhooks pays nothing else. Endpoints
registered later hear about what happens from then on.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog

from service.db.engine import transaction_connection
from service.db.tables import CreditNote
from service.db.tables import Subscription as SubscriptionRow
from service.openapi import API_VERSION
from service.outgoing import objects
from service.outgoing.types import OBJECT_TYPES, EventType
from service.tenancy.platform import PLATFORM_MERCHANT_ID

log = structlog.get_logger(__name__)

# The endpoints that hear about this merchant's events of this type: the merchant's own, and the
# platform's for every merchant or for this one. Disabled ones too: their deliveries wait for an
# operator to enable them again.
_TARGETS = """
SELECT merchant_id, id FROM webhook_endpoints
WHERE deleted_at IS NULL
  AND (merchant_id = $1
       OR (merchant_id = $2 AND (for_merchant_id IS NULL OR for_merchant_id = $1)))
  AND ($3::text = ANY(event_types) OR '*' = ANY(event_types))
ORDER BY created_at, id
"""

# The merchants among several that some endpoint listens to for any of these types: one read for
# a batch (the period close's) instead of one per event; the events themselves go through `record`.
_LISTENED = """
SELECT DISTINCT m.id AS merchant_id
FROM unnest($1::uuid[]) AS m (id)
JOIN webhook_endpoints e
  ON e.deleted_at IS NULL
 AND (e.merchant_id = m.id
      OR (e.merchant_id = $2 AND (e.for_merchant_id IS NULL OR e.for_merchant_id = m.id)))
 AND ('*' = ANY(e.event_types) OR e.event_types && $3::varchar[])
WHERE e.merchant_id = ANY($1::uuid[] || $2::uuid)
"""

_INSERT = """
WITH event AS (
    INSERT INTO outgoing_events (merchant_id, id, type, created_at, api_version, body)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING merchant_id, id
)
INSERT INTO outgoing_deliveries (merchant_id, event_id, endpoint_merchant_id, endpoint_id)
SELECT event.merchant_id, event.id, target.merchant_id, target.id
FROM event, unnest($7::uuid[], $8::uuid[]) AS target (merchant_id, id)
"""

_MARK = """
INSERT INTO outgoing_event_marks (merchant_id, mark) VALUES ($1, $2)
ON CONFLICT (merchant_id, mark) DO NOTHING
RETURNING mark
"""

Data = Mapping[str, Any]


async def record(
    merchant_id: UUID,
    event_type: EventType,
    *,
    at: datetime,
    data: Callable[[], Awaitable[Data]],
) -> UUID | None:
    """Write one event and its deliveries in the caller's transaction; ``data`` is built only
    when some endpoint wants the event. The event's id, or None when nobody listens."""
    connection = transaction_connection()
    targets = await connection.fetch(_TARGETS, merchant_id, PLATFORM_MERCHANT_ID, event_type.value)
    if not targets:
        return None
    event_id = uuid.uuid4()
    body = encode(
        event_id=event_id,
        event_type=event_type,
        merchant_id=merchant_id,
        at=at,
        data={"object_type": OBJECT_TYPES[event_type], **(await data())},
    )
    await connection.execute(
        _INSERT,
        merchant_id,
        event_id,
        event_type.value,
        at,
        API_VERSION,
        body,
        [target["merchant_id"] for target in targets],
        [target["id"] for target in targets],
    )
    log.info(
        "outgoing_event_recorded",
        event_id=str(event_id),
        type=event_type.value,
        deliveries=len(targets),
    )
    return event_id


async def listened_among(
    merchant_ids: Collection[UUID], event_types: Collection[EventType]
) -> set[UUID]:
    """Which of ``merchant_ids`` some endpoint hears about for any of ``event_types``."""
    if not merchant_ids:
        return set()
    rows = await transaction_connection().fetch(
        _LISTENED,
        list(merchant_ids),
        PLATFORM_MERCHANT_ID,
        [event_type.value for event_type in event_types],
    )
    return {row["merchant_id"] for row in rows}


async def once(merchant_id: UUID, mark: str) -> bool:
    """True the first time ``mark`` is made for the merchant (in the caller's transaction), and
    never again: the primary key decides, so two workers cannot both see a first time."""
    return await transaction_connection().fetchval(_MARK, merchant_id, mark) is not None


def encode(
    *, event_id: UUID, event_type: EventType, merchant_id: UUID, at: datetime, data: Data
) -> str:
    """The event's JSON: every timestamp in it in UTC with ``Z``."""
    envelope = {
        "id": str(event_id),
        "object": "event",
        "type": event_type.value,
        "created": at,
        "api_version": API_VERSION,
        "merchant_id": str(merchant_id),
        "data": data,
    }
    plain = msgspec.to_builtins(envelope, builtin_types=(datetime,))
    return msgspec.json.encode(_in_utc(plain)).decode()


def _in_utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _in_utc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_utc(item) for item in value]
    return value


# -- one function per fact, called where the fact happens ---------------------------------------


def subscription_type(kind: str, from_status: str | None, to_status: str | None) -> EventType:
    """The event a subscription history entry is (``subscription_events.kind``)."""
    if kind == "created":
        return EventType.SUBSCRIPTION_CREATED
    if kind == "status_changed":
        if to_status == "past_due":
            return EventType.SUBSCRIPTION_PAST_DUE
        if to_status == "suspended":
            return EventType.SUBSCRIPTION_SUSPENDED
        if to_status == "canceled":
            return EventType.SUBSCRIPTION_CANCELED
        if to_status == "active" and from_status in ("past_due", "suspended", "paused"):
            return EventType.SUBSCRIPTION_RESUMED
    return EventType.SUBSCRIPTION_UPDATED


async def subscription_recorded(
    sub: SubscriptionRow,
    kind: str,
    *,
    at: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
) -> UUID | None:
    """A subscription history entry: created, a status change, a plan change, a new period..."""
    event_type = subscription_type(kind, from_status, to_status)

    async def data() -> Data:
        return {"object": await objects.subscription(sub), "change": kind}

    return await record(sub.merchant_id, event_type, at=at, data=data)


async def subscription_trial_will_end(sub: SubscriptionRow, *, at: datetime) -> UUID | None:
    async def data() -> Data:
        return {"object": await objects.subscription(sub)}

    return await record(sub.merchant_id, EventType.SUBSCRIPTION_TRIAL_WILL_END, at=at, data=data)


async def invoice_event(
    event_type: EventType, merchant_id: UUID, invoice_id: UUID, *, at: datetime
) -> UUID | None:
    async def data() -> Data:
        return {"object": await objects.invoice(merchant_id, invoice_id)}

    return await record(merchant_id, event_type, at=at, data=data)


INVOICE_FINALIZED_TYPES = (EventType.INVOICE_FINALIZED, EventType.INVOICE_PAID)
"""What `invoice_finalized` may emit."""


async def invoice_finalized(
    merchant_id: UUID, invoice_id: UUID, *, status: str, at: datetime
) -> None:
    """A new invoice: finalized, and paid as well when nothing was due on it."""
    await invoice_event(EventType.INVOICE_FINALIZED, merchant_id, invoice_id, at=at)
    if status == "paid":
        await invoice_event(EventType.INVOICE_PAID, merchant_id, invoice_id, at=at)


async def invoice_paid(merchant_id: UUID, invoice_id: UUID, *, at: datetime) -> UUID | None:
    return await invoice_event(EventType.INVOICE_PAID, merchant_id, invoice_id, at=at)


async def invoice_payment_failed(
    merchant_id: UUID, invoice_id: UUID, *, at: datetime
) -> UUID | None:
    return await invoice_event(EventType.INVOICE_PAYMENT_FAILED, merchant_id, invoice_id, at=at)


async def invoice_voided(merchant_id: UUID, invoice_id: UUID, *, at: datetime) -> UUID | None:
    return await invoice_event(EventType.INVOICE_VOIDED, merchant_id, invoice_id, at=at)


async def credit_note_issued(note: CreditNote, *, at: datetime) -> UUID | None:
    async def data() -> Data:
        return {"object": objects.credit_note(note)}

    return await record(note.merchant_id, EventType.CREDIT_NOTE_ISSUED, at=at, data=data)


async def payment_method_required(
    merchant_id: UUID,
    *,
    at: datetime,
    reason: str,
    invoice_id: UUID | None = None,
    setup_url: str | None = None,
) -> UUID | None:
    """The merchant has no way to pay on file for what is due. For the ways-to-pay flow to call
    where it finds that out; ``setup_url`` is where the merchant adds one, ``invoice_id`` the
    invoice waiting for it, if any. ``data.object`` is the merchant."""

    async def data() -> Data:
        return {
            "object": await objects.merchant(merchant_id),
            "reason": reason,
            "invoice_id": str(invoice_id) if invoice_id is not None else None,
            "setup_url": setup_url,
        }

    return await record(merchant_id, EventType.PAYMENT_METHOD_REQUIRED, at=at, data=data)


async def usage_threshold_reached(
    merchant_id: UUID,
    *,
    at: datetime,
    summary: Callable[[], Awaitable[Any]],
    threshold: Data,
) -> UUID | None:
    """The period's orders reached a share of those included (``threshold``: the figures);
    ``data.object`` is the period's usage as ``GET /v1/usage/summary`` answers it."""

    async def data() -> Data:
        return {"object": await summary(), "threshold": threshold}

    return await record(merchant_id, EventType.USAGE_THRESHOLD_REACHED, at=at, data=data)


async def plan_cheaper_available(
    merchant_id: UUID,
    *,
    at: datetime,
    quote: Callable[[], Any],
    figures: Data,
) -> UUID | None:
    """Another plan costs less for this period's usage; ``data.object`` is the comparison as
    ``POST /v1/plans/quote`` answers it, ``figures`` what the merchant pays now and would pay."""

    async def data() -> Data:
        return {"object": quote(), **figures}

    return await record(merchant_id, EventType.PLAN_CHEAPER_AVAILABLE, at=at, data=data)
