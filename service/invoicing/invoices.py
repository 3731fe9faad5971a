"""Invoices: writing a rated draft as a finalized invoice with its number (unique across the
ledger, gapless per merchant: ``service.invoicing.numbering``), and the moves an invoice makes
afterwards (paid, void, uncollectible). A finalized invoice's lines and amounts
never change (the database refuses it); corrections are credit notes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from plans.rating import InvoiceDraft
from service.db.engine import transaction_connection
from service.db.tables import Invoice, InvoiceLineRow, Payment
from service.errors import Conflict, NotFound
from service.invoicing import numbering
from service.outgoing import emit
from service.stripe_outbox import Command, enqueue
from service.tenancy.scope import owner_of, scoped


@dataclass(frozen=True, slots=True)
class Finalized:
    """What the close reports of an invoice it made."""

    id: UUID
    merchant_id: UUID
    subscription_id: UUID
    kind: str
    period_start: datetime
    period_end: datetime
    number: str
    total_minor: int
    currency: str


class AlreadyInvoiced(Exception):
    """This subscription period has its invoice; raising it rolls back the number taken."""


_INSERT_INVOICE = """
INSERT INTO invoices (merchant_id, subscription_id, kind, period_start, period_end, status,
    number, currency, plan_code, plan_version, subtotal_minor, discounts_minor, credits_minor,
    tax_rate, tax_minor, total_minor, amount_due_minor, credit_balance_applied_minor,
    credit_balance_carried_minor, created_at, finalized_at, paid_at)
VALUES ($1, $2, $3, $4, $5, $6::text, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18,
    $19, $19, CASE WHEN $6::text = 'paid' THEN $19::timestamptz END)
ON CONFLICT (merchant_id, subscription_id, period_start, kind) DO NOTHING
RETURNING id
"""

_INSERT_LINES = """
INSERT INTO invoice_lines (merchant_id, invoice_id, position, kind, charge_code, description,
    quantity, unit_price, rate, amount_minor, currency, period_start, period_end, explanation)
SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::numeric[],
    $8::numeric[], $9::numeric[], $10::bigint[], $11::text[], $12::timestamptz[],
    $13::timestamptz[], $14::text[])
"""


async def create(
    *,
    merchant_id: UUID,
    subscription_id: UUID,
    kind: str,
    period_start: datetime,
    period_end: datetime,
    draft: InvoiceDraft,
    now: datetime,
) -> Finalized:
    """Write a finalized invoice (draft → open, numbered; nothing due → paid) in the caller's
    transaction. Raises AlreadyInvoiced when the period has its invoice: the unique key, not a
    check, is what makes a second close pass (or one after a crash) change nothing, and the
    caller's rollback gives back the number."""
    connection = transaction_connection()
    number = await numbering.next_number(merchant_id)
    status = "paid" if draft.total_minor == 0 else "open"
    invoice_id = await connection.fetchval(
        _INSERT_INVOICE,
        merchant_id,
        subscription_id,
        kind,
        period_start,
        period_end,
        status,
        number,
        draft.currency,
        draft.plan_code,
        draft.plan_version,
        draft.subtotal_minor,
        draft.discounts_minor,
        draft.credits_minor,
        draft.tax_rate,
        draft.tax_minor,
        draft.total_minor,
        draft.credit_balance_applied_minor,
        draft.credit_balance_carried_forward_minor,
        now,
    )
    if invoice_id is None:
        raise AlreadyInvoiced(f"{kind} invoice for {period_start.isoformat()} exists")
    lines = draft.lines
    await connection.execute(
        _INSERT_LINES,
        merchant_id,
        invoice_id,
        list(range(1, len(lines) + 1)),
        [line.kind for line in lines],
        [line.charge_code for line in lines],
        [line.description[:200] for line in lines],
        [line.quantity for line in lines],
        [line.unit_price for line in lines],
        [line.rate for line in lines],
        [line.amount_minor for line in lines],
        [line.currency for line in lines],
        [line.period_start for line in lines],
        [line.period_end for line in lines],
        [line.explanation[:400] for line in lines],
    )
    if draft.total_minor > 0:  # pushed to Stripe, which collects it
        await enqueue(merchant_id, Command.INVOICE_PUSH, {"invoice_id": str(invoice_id)})
    await emit.invoice_finalized(merchant_id, invoice_id, status=status, at=now)
    return Finalized(
        id=invoice_id,
        merchant_id=merchant_id,
        subscription_id=subscription_id,
        kind=kind,
        period_start=period_start,
        period_end=period_end,
        number=number,
        total_minor=draft.total_minor,
        currency=draft.currency,
    )


async def get(merchant_id: UUID | None, invoice_id: UUID, *, lock: bool = False) -> Invoice:
    """An invoice inside the merchant's scope (``None``: operator)."""
    if lock and merchant_id is None:  # an operator: the lock names the merchant (``owner_of``)
        merchant_id = await owner_of(Invoice, invoice_id)
        if merchant_id is None:
            raise NotFound(f"invoice {invoice_id} not found")
    query = scoped(Invoice.objects().where(Invoice.id == invoice_id), Invoice, merchant_id)
    if lock:
        query = query.lock_rows("UPDATE")
    invoice = await query.first()
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return invoice


async def lines(merchant_id: UUID, invoice_id: UUID) -> list[dict[str, Any]]:
    return (
        await InvoiceLineRow.select()
        .where(InvoiceLineRow.merchant_id == merchant_id)
        .where(InvoiceLineRow.invoice_id == invoice_id)
        .order_by(InvoiceLineRow.position)
    )


async def payments(merchant_id: UUID, invoice_id: UUID) -> list[Payment]:
    """Money Stripe reported for the invoice (its payment intent and charge once known)."""
    return await (
        Payment.objects()
        .where(Payment.merchant_id == merchant_id)
        .where(Payment.invoice_id == invoice_id)
        .order_by(Payment.paid_at)
    )


async def void(merchant_id: UUID | None, invoice_id: UUID, *, now: datetime) -> Invoice:
    """open → void. A paid invoice is corrected with a credit note instead."""
    invoice = await get(merchant_id, invoice_id, lock=True)
    if invoice.status != "open":
        raise Conflict(
            f"only an open invoice can be voided; {invoice.number} is {invoice.status}"
            + (" (issue a credit note)" if invoice.status == "paid" else "")
        )
    if invoice.amount_paid_minor:
        raise Conflict(f"invoice {invoice.number} has payments; issue a credit note instead")
    invoice.status = "void"
    invoice.voided_at = now
    await invoice.save([Invoice.status, Invoice.voided_at])
    await enqueue(invoice.merchant_id, Command.INVOICE_VOID, {"invoice_id": str(invoice.id)})
    await emit.invoice_voided(invoice.merchant_id, invoice.id, at=now)
    return invoice


async def record_payment(invoice: Invoice, amount_minor: int, *, at: datetime) -> Invoice:
    """Money received against an open invoice; paid once nothing is due."""
    if invoice.status == "void":
        raise Conflict(f"invoice {invoice.number} is void")
    invoice.amount_paid_minor += amount_minor
    invoice.amount_due_minor = max(invoice.amount_due_minor - amount_minor, 0)
    columns = [Invoice.amount_paid_minor, Invoice.amount_due_minor]
    is_paid_now = invoice.amount_due_minor == 0 and invoice.status in ("open", "uncollectible")
    if is_paid_now:
        invoice.status = "paid"
        invoice.paid_at = at
        columns += [Invoice.status, Invoice.paid_at]
    await invoice.save(columns)
    if is_paid_now:
        await emit.invoice_paid(invoice.merchant_id, invoice.id, at=at)
    return invoice


async def mark_uncollectible(invoice: Invoice, *, at: datetime) -> Invoice:
    if invoice.status != "open":
        raise Conflict(f"only an open invoice can be marked uncollectible ({invoice.status})")
    invoice.status = "uncollectible"
    invoice.marked_uncollectible_at = at
    await invoice.save([Invoice.status, Invoice.marked_uncollectible_at])
    return invoice
