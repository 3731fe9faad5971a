"""What was sent and how it went: events, their deliveries and every attempt (operators), and
replaying an event (``billing events replay ID``).

A replay sends the same event (same id, same body) again as a new delivery to each endpoint it
went to, at the end of that endpoint's queue for the merchant; receivers that remember event ids
see it as a duplicate, the others handle it again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

import msgspec

from service.db.engine import current as current_database
from service.db.tables import OutgoingAttempt, OutgoingDelivery, OutgoingEvent
from service.errors import NotFound
from service.outgoing.schemas import AttemptOut, DeliveryOut, EventOut

# Three statements rather than a join: the deliveries sit on the merchant's shard, an operator's
# endpoints on the platform's (Citus).
_WENT_TO = """
SELECT DISTINCT endpoint_merchant_id, endpoint_id FROM outgoing_deliveries
WHERE merchant_id = $1 AND event_id = $2 AND ($3::uuid IS NULL OR endpoint_id = $3)
"""

_LIVE = """
SELECT merchant_id, id FROM webhook_endpoints
WHERE deleted_at IS NULL AND merchant_id = ANY($1::uuid[]) AND id = ANY($2::uuid[])
ORDER BY created_at, id
"""

_REPLAY = """
INSERT INTO outgoing_deliveries (merchant_id, event_id, endpoint_merchant_id, endpoint_id,
    is_replay)
SELECT $1, $2, target.merchant_id, target.id, true
FROM unnest($3::uuid[], $4::uuid[]) AS target (merchant_id, id)
RETURNING id, endpoint_id
"""


async def events(
    *,
    merchant_id: UUID | None,
    event_type: str | None = None,
    limit: int = 100,
) -> list[EventOut]:
    """Recent events, newest first, each with its deliveries (without their attempts)."""
    query = (
        OutgoingEvent.select(
            OutgoingEvent.merchant_id,
            OutgoingEvent.id,
            OutgoingEvent.type,
            OutgoingEvent.created_at,
            OutgoingEvent.api_version,
        )
        .order_by(OutgoingEvent.recorded_at, ascending=False)
        .limit(limit)
    )
    if merchant_id is not None:
        query = query.where(OutgoingEvent.merchant_id == merchant_id)
    if event_type is not None:
        query = query.where(OutgoingEvent.type == event_type)
    rows = await query
    deliveries = await _deliveries([(row["merchant_id"], row["id"]) for row in rows])
    return [_event_out(row, deliveries.get(row["id"], [])) for row in rows]


async def event(event_id: UUID) -> EventOut:
    """One event as sent, with every delivery and every attempt of each."""
    row = await OutgoingEvent.select().where(OutgoingEvent.id == event_id).first()
    if row is None:
        raise NotFound(f"event {event_id} not found")
    found = await _deliveries([(row["merchant_id"], row["id"])], with_log=True)
    out = _event_out(row, found.get(row["id"], []))
    out.body = msgspec.json.decode(row["body"])
    return out


async def replay(event_id: UUID, *, endpoint_id: UUID | None = None) -> list[tuple[UUID, UUID]]:
    """New deliveries of the event to each live endpoint it went to (or only ``endpoint_id``):
    ``(delivery id, endpoint id)`` of each; NotFound when there is no such event."""
    found = (
        await OutgoingEvent.select(OutgoingEvent.merchant_id)
        .where(OutgoingEvent.id == event_id)
        .first()
    )
    if found is None:
        raise NotFound(f"event {event_id} not found")
    pool = current_database().pool
    merchant_id = found["merchant_id"]
    went_to = await pool.fetch(_WENT_TO, merchant_id, event_id, endpoint_id)
    live = await pool.fetch(
        _LIVE,
        [row["endpoint_merchant_id"] for row in went_to],
        [row["endpoint_id"] for row in went_to],
    )
    if not live:
        return []
    rows = await pool.fetch(
        _REPLAY,
        merchant_id,
        event_id,
        [row["merchant_id"] for row in live],
        [row["id"] for row in live],
    )
    return [(row["id"], row["endpoint_id"]) for row in rows]


async def _deliveries(
    keys: list[tuple[UUID, UUID]], *, with_log: bool = False
) -> dict[UUID, list[DeliveryOut]]:
    if not keys:
        return {}
    merchant_ids = list({merchant_id for merchant_id, _ in keys})
    event_ids = [event_id for _, event_id in keys]
    rows = (
        await OutgoingDelivery.select()
        .where(OutgoingDelivery.merchant_id.is_in(merchant_ids))
        .where(OutgoingDelivery.event_id.is_in(event_ids))
        .order_by(OutgoingDelivery.seq)
    )
    attempts: dict[UUID, list[AttemptOut]] = defaultdict(list)
    if with_log and rows:
        for attempt in (
            await OutgoingAttempt.select()
            .where(OutgoingAttempt.merchant_id.is_in(merchant_ids))
            .where(OutgoingAttempt.delivery_id.is_in([row["id"] for row in rows]))
            .order_by(OutgoingAttempt.attempt)
        ):
            attempts[attempt["delivery_id"]].append(
                AttemptOut(**{name: attempt[name] for name in AttemptOut.__struct_fields__})
            )
    by_event: dict[UUID, list[DeliveryOut]] = defaultdict(list)
    for row in rows:
        by_event[row["event_id"]].append(
            DeliveryOut(
                id=row["id"],
                endpoint_id=row["endpoint_id"],
                status=row["status"],
                attempts=row["attempts"],
                next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
                delivered_at=row["delivered_at"],
                last_status_code=row["last_status_code"],
                last_error=row["last_error"],
                is_replay=row["is_replay"],
                created_at=row["created_at"],
                log=attempts.get(row["id"], []) if with_log else None,
            )
        )
    return by_event


def _event_out(row: dict[str, Any], deliveries: list[DeliveryOut]) -> EventOut:
    return EventOut(
        id=row["id"],
        type=row["type"],
        merchant_id=row["merchant_id"],
        created=row["created_at"],
        api_version=row["api_version"],
        deliveries=deliveries,
    )
