"""Dunning: a failed invoice payment is tried again on a schedule (``handlers.invoices``
sets ``next_payment_retry_at`` after each failure); when a retry is due the worker queues it
in the outbox, and the outcome comes back as ``invoice.paid`` or ``invoice.payment_failed``.

A sent invoice is dunned only once it is overdue — past its due date on our clock (the
merchant's: a test clock's time for one on a clock): its subscription goes past due then, and
is suspended when it is still unpaid as long after as a failing card's retries last
(`SUSPEND_AFTER_OVERDUE`). Having no way to pay saved is never dunned by itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import structlog

from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.db.tables import Invoice
from service.stripe_outbox import Command, enqueue
from service.subscriptions.states import Status
from webhooks.handlers.invoices import RETRY_SCHEDULE, move_subscription

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


SUSPEND_AFTER_OVERDUE = sum(RETRY_SCHEDULE, timedelta(0))
"""An overdue sent invoice still unpaid this long after its due date suspends the
subscription: the 15 days a failing card's retries take."""

# Sent invoices past their due date (stage 0) or past it by SUSPEND_AFTER_OVERDUE (stage 1), on
# each merchant's clock, found without a lock; each is then claimed by its merchant and id.
_OVERDUE = """
SELECT i.merchant_id, i.id, i.overdue_stage
FROM invoices i
JOIN merchants m ON m.id = i.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE i.status = 'open' AND i.due_at IS NOT NULL AND i.overdue_stage < 2
  AND i.amount_due_minor > 0
  AND i.due_at + CASE WHEN i.overdue_stage = 0 THEN interval '0' ELSE $2::interval END
      < coalesce(tc.frozen_time, $1)
ORDER BY i.due_at
LIMIT $3
"""

_CLAIM_OVERDUE = """
SELECT i.id, coalesce(tc.frozen_time, $4) AS merchant_now
FROM invoices i
JOIN merchants m ON m.id = i.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE i.merchant_id = $1 AND i.id = $2 AND i.status = 'open' AND i.overdue_stage = $3
FOR UPDATE OF i SKIP LOCKED
"""


async def mark_overdue(*, now: datetime, limit: int = 500) -> int:
    """Move the subscriptions of overdue sent invoices along: past due at the due date,
    suspended `SUSPEND_AFTER_OVERDUE` later. The number of invoices that moved a stage."""
    moved = 0
    rows = await current_database().pool.fetch(_OVERDUE, now, SUSPEND_AFTER_OVERDUE, limit)
    for row in rows:
        if await _overdue_one(row["merchant_id"], row["id"], row["overdue_stage"], now=now):
            moved += 1
    return moved


async def _overdue_one(merchant_id: UUID, invoice_id: UUID, stage: int, *, now: datetime) -> bool:
    async with current_database().engine.transaction():
        connection = transaction_connection()
        claimed = await connection.fetchrow(_CLAIM_OVERDUE, merchant_id, invoice_id, stage, now)
        if claimed is None:
            return False
        invoice = (
            await Invoice.objects()
            .where(Invoice.merchant_id == merchant_id)
            .where(Invoice.id == invoice_id)
            .first()
        )
        assert invoice is not None
        await connection.execute(
            "UPDATE invoices SET overdue_stage = $3 WHERE merchant_id = $1 AND id = $2",
            merchant_id,
            invoice_id,
            stage + 1,
        )
        due = invoice.due_at
        if stage == 0:
            target, reason = (
                Status.PAST_DUE,
                f"invoice {invoice.number} overdue since {due:%Y-%m-%d}",
            )
        else:
            target = Status.SUSPENDED
            reason = f"invoice {invoice.number} unpaid {SUSPEND_AFTER_OVERDUE.days} days past due"
        moved = await move_subscription(invoice, target, reason=reason, at=claimed["merchant_now"])
    log.info(
        "invoice_overdue",
        invoice_id=str(invoice_id),
        merchant_id=str(merchant_id),
        stage=stage + 1,
        subscription=moved.strip("; "),
    )
    return True
