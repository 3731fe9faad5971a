"""Dunning: a failed invoice payment is tried again on a schedule (``handlers.invoices``
sets ``next_payment_retry_at`` after each failure); when a retry is due the worker queues it
in the outbox, and the outcome comes back as ``invoice.paid`` or ``invoice.payment_failed``."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import structlog

from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.stripe_outbox import Command, enqueue

log = structlog.get_logger(__name__)

# Due retries, found without a lock, then each claimed by its merchant and id (one shard on
# Citus), skipping one another worker holds: two workers never queue the same retry.
_DUE = """
SELECT merchant_id, id FROM invoices
WHERE status = 'open' AND next_payment_retry_at <= $1 AND stripe_invoice_id IS NOT NULL
ORDER BY next_payment_retry_at
LIMIT $2
"""

_CLAIM = """
SELECT id, merchant_id, payment_attempts FROM invoices
WHERE merchant_id = $1 AND id = $2
  AND status = 'open' AND next_payment_retry_at <= $3 AND stripe_invoice_id IS NOT NULL
FOR UPDATE SKIP LOCKED
"""

_BATCH = 50


async def queue_due_retries(*, now: datetime, limit: int = 500) -> int:
    queued = 0
    while queued < limit:
        candidates = await current_database().pool.fetch(_DUE, now, min(_BATCH, limit - queued))
        claimed_any = False
        for candidate in candidates:
            if await _queue_one(candidate["merchant_id"], candidate["id"], now=now):
                claimed_any = True
                queued += 1
        if not claimed_any:  # nothing due, or every one taken by another worker
            break
    return queued


async def _queue_one(merchant_id: UUID, invoice_id: UUID, *, now: datetime) -> bool:
    async with current_database().engine.transaction():
        connection = transaction_connection()
        row = await connection.fetchrow(_CLAIM, merchant_id, invoice_id, now)
        if row is None:
            return False
        await connection.execute(
            "UPDATE invoices SET next_payment_retry_at = NULL WHERE merchant_id = $1 AND id = $2",
            merchant_id,
            invoice_id,
        )
        await enqueue(merchant_id, Command.INVOICE_RETRY_PAYMENT, {"invoice_id": str(invoice_id)})
    log.info(
        "dunning_retry_queued",
        invoice_id=str(invoice_id),
        failed_attempts=row["payment_attempts"],
    )
    return True
