"""Taking a recorded usage event back: it is marked voided and subtracted from its period's
aggregates, once. Voiding it again changes nothing and answers as the first void did
(idempotent, like re-sending an event), so a client may retry a void safely.

A voided transaction id stays taken: sending the event again is a duplicate, never a recount.
If the event's period was already invoiced, the lower aggregate becomes a negative adjustment
line on the next invoice, the same way late usage becomes a positive one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from service.db.engine import current as current_database
from service.errors import NotFound
from service.usage.ingest import AGGREGATE_SLOTS

_MARK_TRANSACTION = """
UPDATE usage_transactions SET voided_at = $3
WHERE merchant_id = $1 AND transaction_id = $2 AND voided_at IS NULL
RETURNING occurred_at
"""

_VOIDED_BEFORE = """
SELECT voided_at FROM usage_transactions WHERE merchant_id = $1 AND transaction_id = $2
"""

# occurred_at is the partition key: the update reads one partition, through its index.
_MARK_EVENT = """
UPDATE usage_events SET voided_at = $4
WHERE merchant_id = $1 AND occurred_at = $3 AND transaction_id = $2 AND voided_at IS NULL
RETURNING subscription_id, period_start, metric, quantity, coalesce(gmv_minor, 0) AS gmv_minor
"""

# Aggregates are read as the sum over slots, so the void subtracts in this connection's slot.
_SUBTRACT = f"""
INSERT INTO usage_aggregates AS total (merchant_id, subscription_id, period_start, metric, slot,
                                       event_count, quantity, gmv_minor)
VALUES ($1, $2, $3, $4, pg_backend_pid() % {AGGREGATE_SLOTS}, -1, -$5::numeric, -$6::bigint)
ON CONFLICT (merchant_id, subscription_id, period_start, metric, slot) DO UPDATE
SET event_count = total.event_count + excluded.event_count,
    quantity = total.quantity + excluded.quantity,
    gmv_minor = total.gmv_minor + excluded.gmv_minor
"""


@dataclass(frozen=True, slots=True)
class Voided:
    transaction_id: str
    voided_at: datetime
    was_already_voided: bool


async def void(merchant_id: UUID, transaction_id: str, *, now: datetime) -> Voided:
    """Void the merchant's event ``transaction_id``; NotFound if the merchant has none."""
    async with current_database().pool.acquire() as connection, connection.transaction():
        # The row lock taken here makes concurrent voids of one id wait, then find it voided.
        occurred_at = await connection.fetchval(_MARK_TRANSACTION, merchant_id, transaction_id, now)
        if occurred_at is None:
            voided_at = await connection.fetchval(_VOIDED_BEFORE, merchant_id, transaction_id)
            if voided_at is None:
                raise NotFound(f"usage event {transaction_id!r} not found", field="transaction_id")
            return Voided(transaction_id, voided_at, was_already_voided=True)
        event = await connection.fetchrow(
            _MARK_EVENT, merchant_id, transaction_id, occurred_at, now
        )
        if event is None:  # the ledger row without its event: a bug, never a silent success
            raise RuntimeError(f"usage event {transaction_id!r} is missing from usage_events")
        await connection.execute(
            _SUBTRACT,
            merchant_id,
            event["subscription_id"],
            event["period_start"],
            event["metric"],
            event["quantity"],
            event["gmv_minor"],
        )
    return Voided(transaction_id, now, was_already_voided=False)
