"""A merchant's credit balance: credits its invoices could not absorb, and where they go.

The balance grows when an invoice's credits exceed its charges (the invoice's "Credit carried
forward" line: a cancellation's unused fee, SLA credits larger than the invoice). It is spent
in this order:

1. on the merchant's **open invoices, oldest first**, each as a credit note with the reason
   ``credit_balance`` (the Stripe sync credits the Stripe invoice before it is paid, or
   refunds if Stripe collected meanwhile);
2. on the **next invoices**, as their "Credit balance applied" line, before tax;
3. once **nothing more will be invoiced** (no live subscription, every ended period invoiced,
   no line waiting for an invoice), refunded against the merchant's **most recent payments**,
   newest first, as credit notes on those paid invoices (the Stripe sync makes the refunds).

What no payment can take stays on the balance, visible (``GET /v1/credit-balance``, the
``credit_balance`` export). Every movement is a ``credit_balance_movements`` row and an audit
entry, written in the transaction that moves the money while the balance row is locked: a close
or a worker pass run twice finds the balance already spent and moves nothing twice, and unique
keys (one movement per invoice line, one per credit note) and ``balance >= 0`` make a double
movement impossible in the database, not just in this code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import structlog

from plans.money import format_minor
from plans.rating import InvoiceDraft
from service.audit import log as audit
from service.db.engine import transaction_connection
from service.invoicing import credit_notes
from service.tenancy.principal import SYSTEM_ACTOR

log = structlog.get_logger(__name__)


class Kind(StrEnum):
    OPENING = "opening"
    """A balance that predates the movements (written once, by their migration)."""
    CARRIED_FORWARD = "carried_forward"
    """An invoice's credits beyond its charges (+)."""
    APPLIED_TO_INVOICE = "applied_to_invoice"
    """Taken by a new invoice as its "Credit balance applied" line (−)."""
    CREDIT_NOTE = "credit_note"
    """Applied to an open invoice as a credit note (−)."""
    REFUND = "refund"
    """Refunded against a paid invoice, as a credit note with a refund (−)."""


@dataclass(frozen=True, slots=True)
class Movement:
    id: UUID
    merchant_id: UUID
    seq: int
    kind: str
    amount_minor: int
    currency: str
    balance_after_minor: int
    invoice_id: UUID | None
    invoice_number: str | None
    credit_note_id: UUID | None
    credit_note_number: str | None
    memo: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    merchant_id: UUID
    currency: str
    balance_minor: int
    movements: list[Movement]


# -- in the transaction that moves money ---------------------------------------------------


_LOCK = (
    "INSERT INTO credit_balances (merchant_id, currency, balance_minor)"
    " VALUES ($1, $2, 0) ON CONFLICT (merchant_id)"
    " DO UPDATE SET balance_minor = credit_balances.balance_minor"
    " RETURNING balance_minor"
)


async def lock(merchant_id: UUID, currency: str) -> int:
    """The merchant's balance, its row locked until the transaction ends (made at 0 if new)."""
    return int(await transaction_connection().fetchval(_LOCK, merchant_id, currency))


async def lock_many(currencies: dict[UUID, str]) -> dict[UUID, int]:
    """`lock` for several merchants (merchant → its currency) in one pipelined round trip, in
    merchant order; each statement names its merchant."""
    ordered = sorted(currencies)
    if not ordered:
        return {}
    rows = await transaction_connection().fetchmany(
        _LOCK, [(merchant_id, currencies[merchant_id]) for merchant_id in ordered]
    )
    return {m: int(row["balance_minor"]) for m, row in zip(ordered, rows, strict=True)}


async def record_invoice(
    *, merchant_id: UUID, invoice_id: UUID, draft: InvoiceDraft, balance_before: int, now: datetime
) -> None:
    """What a new invoice did to the balance (locked by `lock`, read as ``balance_before``):
    took it as a line, or carried its own surplus credit in."""
    applied = draft.credit_balance_applied_minor
    carried_in = draft.credit_balance_carried_forward_minor - balance_before + applied
    balance = balance_before
    if applied:
        balance -= applied
        await _move(
            merchant_id, Kind.APPLIED_TO_INVOICE, -applied, draft.currency, balance,
            invoice_id=invoice_id, memo="applied as a line of the invoice", now=now,
        )  # fmt: skip
    if carried_in:
        balance += carried_in
        await _move(
            merchant_id, Kind.CARRIED_FORWARD, carried_in, draft.currency, balance,
            invoice_id=invoice_id, memo="credits beyond the invoice's charges", now=now,
        )  # fmt: skip
    assert balance == draft.credit_balance_carried_forward_minor
    await _store(merchant_id, balance)


async def settle(merchant_id: UUID, currency: str, *, now: datetime) -> int:
    """Spend the balance where it belongs now: open invoices, oldest first; then, if nothing
    more will be invoiced, refunds against the newest payments. Returns what is left (what the
    next invoice takes as a line, or what stays)."""
    balance = await lock(merchant_id, currency)
    if balance == 0:
        return 0
    connection = transaction_connection()
    open_invoices = await connection.fetch(_OPEN_INVOICES, merchant_id, currency)
    for row in open_invoices:
        amount = min(balance, row["room"])
        if amount <= 0:
            continue
        balance = await _credit(
            merchant_id, row, amount, balance, Kind.CREDIT_NOTE,
            memo=f"credit balance applied ({format_minor(amount, currency)})", now=now,
        )  # fmt: skip
        if balance == 0:
            break
    if balance and await nothing_more_to_invoice(merchant_id):
        for row in await connection.fetch(_REFUNDABLE_INVOICES, merchant_id, currency):
            amount = min(balance, row["room"])
            if amount <= 0:
                continue
            balance = await _credit(
                merchant_id, row, amount, balance, Kind.REFUND,
                memo="credit balance refunded: nothing more will be invoiced", now=now,
            )  # fmt: skip
            if balance == 0:
                break
    await _store(merchant_id, balance)
    return balance


async def left_for_next_invoice(merchant_id: UUID, currency: str) -> int:
    """What `settle` would leave for an invoice being made now, moving nothing (a preview of
    the close): the balance less what the open invoices can take. Nothing is refunded while an
    invoice is being made, so refunds do not enter into it."""
    balance = await lock(merchant_id, currency)
    rooms = await transaction_connection().fetch(_OPEN_INVOICES, merchant_id, currency)
    return max(0, balance - sum(max(0, row["room"]) for row in rooms))


async def nothing_more_to_invoice(merchant_id: UUID) -> bool:
    """No live subscription, no ended period without its invoice, no line waiting."""
    return bool(await transaction_connection().fetchval(_NOTHING_MORE, merchant_id))


# Open invoices oldest first, and how much a credit note may still take off each.
_OPEN_INVOICES = """
SELECT id, number, LEAST(amount_due_minor, total_minor - amount_credited_minor) AS room
FROM invoices
WHERE merchant_id = $1 AND currency = $2 AND status = 'open' AND amount_due_minor > 0
ORDER BY finalized_at, number
"""

# Paid invoices newest payment first, and how much of what was paid on each can still be
# given back: never more than was paid less what was already refunded, nor more than the
# invoice less every credit note. Disputed payments are left alone (the card network decides).
_REFUNDABLE_INVOICES = """
SELECT i.id, i.number,
       LEAST(i.total_minor - i.amount_credited_minor,
             i.amount_paid_minor - coalesce(r.refunded, 0)) AS room
FROM invoices i
LEFT JOIN LATERAL (
    SELECT sum(n.amount_minor) AS refunded FROM credit_notes n
    WHERE n.merchant_id = i.merchant_id AND n.invoice_id = i.id AND n.kind = 'post_payment'
) r ON true
WHERE i.merchant_id = $1 AND i.currency = $2 AND i.status = 'paid' AND i.amount_paid_minor > 0
  AND i.dispute_status IS NULL
ORDER BY i.paid_at DESC, i.number DESC
"""

_NOTHING_MORE = """
SELECT NOT EXISTS (SELECT 1 FROM subscriptions
                   WHERE merchant_id = $1 AND status <> 'canceled')
   AND NOT EXISTS (SELECT 1 FROM subscription_periods sp
                   WHERE sp.merchant_id = $1 AND sp.status <> 'ended')
   AND NOT EXISTS (SELECT 1 FROM subscription_periods sp
                   WHERE sp.merchant_id = $1 AND NOT EXISTS (
                       SELECT 1 FROM invoices i
                       WHERE i.merchant_id = sp.merchant_id
                         AND i.subscription_id = sp.subscription_id
                         AND i.period_start = sp.period_start AND i.kind = 'period'))
   AND NOT EXISTS (SELECT 1 FROM pending_invoice_lines
                   WHERE merchant_id = $1 AND invoice_id IS NULL)
"""


async def _credit(
    merchant_id: UUID,
    invoice: Any,
    amount: int,
    balance: int,
    kind: Kind,
    *,
    memo: str,
    now: datetime,
) -> int:
    note, _ = await credit_notes.issue(
        merchant_id,
        invoice["id"],
        amount_minor=amount,
        reason=credit_notes.Reason.CREDIT_BALANCE,
        memo=memo,
        now=now,
    )
    balance -= amount
    await _move(
        merchant_id, kind, -amount, note.currency, balance,
        invoice_id=invoice["id"], credit_note_id=note.id, memo=memo, now=now,
    )  # fmt: skip
    return balance


async def _move(
    merchant_id: UUID,
    kind: Kind,
    amount_minor: int,
    currency: str,
    balance_after_minor: int,
    *,
    invoice_id: UUID,
    memo: str,
    now: datetime,
    credit_note_id: UUID | None = None,
) -> None:
    # The caller holds the balance row's lock, so the next number is ours alone.
    movement_id = await transaction_connection().fetchval(
        "INSERT INTO credit_balance_movements (merchant_id, seq, kind, amount_minor, currency,"
        " balance_after_minor, invoice_id, credit_note_id, memo, created_at)"
        " SELECT $1::uuid, coalesce(max(seq), 0) + 1, $2::varchar, $3::bigint, $4::varchar,"
        " $5::bigint, $6::uuid, $7::uuid, $8::varchar, $9::timestamptz"
        " FROM credit_balance_movements WHERE merchant_id = $1 RETURNING id",
        merchant_id,
        kind.value,
        amount_minor,
        currency,
        balance_after_minor,
        invoice_id,
        credit_note_id,
        memo,
        now,
    )
    await audit.record(
        SYSTEM_ACTOR,
        merchant_id=merchant_id,
        entity="credit_balance",
        entity_id=movement_id,
        action=kind.value,
        changes={
            "amount_minor": amount_minor,
            "balance_after_minor": balance_after_minor,
            "invoice_id": str(invoice_id),
            "credit_note_id": str(credit_note_id) if credit_note_id else None,
        },
    )
    log.info(
        "credit_balance_moved",
        merchant_id=str(merchant_id),
        kind=kind.value,
        amount_minor=amount_minor,
        balance_after_minor=balance_after_minor,
        invoice_id=str(invoice_id),
    )


async def _store(merchant_id: UUID, balance_minor: int) -> None:
    await transaction_connection().execute(
        "UPDATE credit_balances SET balance_minor = $2 WHERE merchant_id = $1",
        merchant_id,
        balance_minor,
    )


# -- reading -----------------------------------------------------------------------------------


async def balance_of(merchant_id: UUID, connection: Any) -> Balance:
    """The balance and every movement of it, oldest first."""
    row = await connection.fetchrow(
        "SELECT b.balance_minor, coalesce(b.currency, m.currency) AS currency"
        " FROM merchants m LEFT JOIN credit_balances b ON b.merchant_id = m.id"
        " WHERE m.id = $1",
        merchant_id,
    )
    rows = await connection.fetch(_MOVEMENTS, merchant_id)
    return Balance(
        merchant_id=merchant_id,
        currency=row["currency"] if row else "",
        balance_minor=int(row["balance_minor"] or 0) if row else 0,
        movements=[Movement(merchant_id=merchant_id, **dict(r)) for r in rows],
    )


_MOVEMENTS = """
SELECT mv.id, mv.seq, mv.kind, mv.amount_minor, mv.currency, mv.balance_after_minor, mv.invoice_id,
       i.number AS invoice_number, mv.credit_note_id, n.number AS credit_note_number, mv.memo,
       mv.created_at
FROM credit_balance_movements mv
LEFT JOIN invoices i ON i.merchant_id = mv.merchant_id AND i.id = mv.invoice_id
LEFT JOIN credit_notes n ON n.merchant_id = mv.merchant_id AND n.id = mv.credit_note_id
WHERE mv.merchant_id = $1
ORDER BY mv.seq
"""
