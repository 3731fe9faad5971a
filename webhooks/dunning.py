"""Dunning: a failed invoice payment is tried again on a schedule (``handlers.invoices``
sets ``next_payment_retry_at`` after each failure); when a retry is due the worker queues it
in the outbox, and the outcome comes back as ``invoice.paid`` or ``invoice.payment_failed``."""

from __future__ import annotations

from datetime import datetime

import structlog

from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.stripe_outbox import Command, enqueue

log = structlog.get_logger(__name__)

# Due retries, claimed so that two workers never queue the same one.
_DUE = """
SELECT id, merchant_id, payment_attempts FROM invoices
WHERE status = 'open' AND next_payment_retry_at <= $1 AND stripe_invoice_id IS NOT NULL
ORDER BY next_payment_retry_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""


async def queue_due_retries(*, now: datetime, limit: int = 500) -> int:
    queued = 0
    for _ in range(limit):
        async with current_database().engine.transaction():
            connection = transaction_connection()
            row = await connection.fetchrow(_DUE, now)
            if row is None:
                break
            await connection.execute(
                "UPDATE invoices SET next_payment_retry_at = NULL WHERE id = $1", row["id"]
            )
            await enqueue(
                row["merchant_id"], Command.INVOICE_RETRY_PAYMENT, {"invoice_id": str(row["id"])}
            )
        log.info(
            "dunning_retry_queued",
            invoice_id=str(row["id"]),
            failed_attempts=row["payment_attempts"],
        )
        queued += 1
    return queued
