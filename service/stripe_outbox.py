"""The Stripe outbox, as the domain sees it: ``enqueue`` a push in the caller's transaction.

The row commits with the change that causes it or not at all; ``webhooks.outbox`` sends it
later, in order per stream (a merchant, or ``catalog``), with a Stripe idempotency key made
from the row id, so a resend after a crash is the same request to Stripe.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec

from service.db.tables import StripeOutbox

CATALOG_STREAM = "catalog"
KEY_PREFIX = "kefu-outbox-"


class Command(StrEnum):
    CUSTOMER_CREATE = "customer.create"
    CUSTOMER_UPDATE = "customer.update"
    CATALOG_PLAN = "catalog.plan"
    INVOICE_PUSH = "invoice.push"
    INVOICE_RETRY_PAYMENT = "invoice.retry_payment"
    INVOICE_VOID = "invoice.void"
    CREDIT_NOTE_PUSH = "credit_note.push"


# The id is taken first so the idempotency key, which must be unique and set on insert, can be
# derived from it: one statement, inside whatever transaction the caller holds.
_INSERT = (
    "INSERT INTO stripe_outbox (id, merchant_id, stream, command, payload, idempotency_key)"
    " SELECT n, {}::uuid, {}::text, {}::text, {}::jsonb, {}::text || n"
    " FROM (SELECT nextval(pg_get_serial_sequence('stripe_outbox', 'id')) AS n) AS next_id"
    " RETURNING id"
)


async def enqueue(merchant_id: UUID | None, command: Command, payload: dict[str, Any]) -> int:
    """Queue one push. Call inside the transaction of the change it reports."""
    stream = str(merchant_id) if merchant_id is not None else CATALOG_STREAM
    rows = await StripeOutbox.raw(
        _INSERT,
        merchant_id,
        stream,
        command.value,
        msgspec.json.encode(payload).decode(),
        KEY_PREFIX,
    )
    return int(rows[0]["id"])


def outbox_id_of(idempotency_key: str | None) -> int | None:
    """The outbox row an idempotency key (or a step key made from it) belongs to."""
    if not idempotency_key or not idempotency_key.startswith(KEY_PREFIX):
        return None
    head = idempotency_key[len(KEY_PREFIX) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


async def rows(
    *, status: str | None = None, merchant_id: UUID | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Outbox rows, oldest unsent first then newest sent (for ``billing outbox``)."""
    query = StripeOutbox.select().order_by(StripeOutbox.id).limit(limit)
    if status is not None:
        query = query.where(StripeOutbox.status == status)
    else:
        query = query.where(StripeOutbox.status != "sent")
    if merchant_id is not None:
        query = query.where(StripeOutbox.merchant_id == merchant_id)
    return await query


async def requeue(outbox_id: int, *, now: datetime) -> bool:
    """Put a parked row back in line (after the cause was fixed)."""
    updated = (
        await StripeOutbox.update(
            {
                StripeOutbox.status: "pending",
                StripeOutbox.next_attempt_at: now,
                StripeOutbox.last_error: None,
            }
        )
        .where(StripeOutbox.id == outbox_id)
        .where(StripeOutbox.status == "parked")
        .returning(StripeOutbox.id)
    )
    return bool(updated)
