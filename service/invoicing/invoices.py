"""Invoices: writing a rated draft as a finalized invoice with its number (unique across the
ledger, gapless per merchant: ``service.invoicing.numbering``), and the moves an invoice makes
afterwards (paid, void, uncollectible). A finalized invoice's lines and amounts
never change (the database refuses it); corrections are credit notes."""

from __future__ import annotations

from collections.abc import Sequence
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
from service.stripe_outbox import Command, enqueue, enqueue_many
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


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """A rated draft to write as a finalized invoice."""

    merchant_id: UUID
    subscription_id: UUID
    kind: str
    period_start: datetime
    period_end: datetime
    draft: InvoiceDraft
    now: datetime

    @property
    def status(self) -> str:
        return "paid" if self.draft.total_minor == 0 else "open"


# Many invoices in one statement (the period close writes a batch at once); a period that has
# its invoice already is left out of RETURNING, and the caller rolls the batch back.
_INSERT_INVOICES = """
INSERT INTO invoices (merchant_id, subscription_id, kind, period_start, period_end, status,
    number, currency, plan_code, plan_version, subtotal_minor, discounts_minor, credits_minor,
    tax_rate, tax_minor, total_minor, amount_due_minor, credit_balance_applied_minor,
    credit_balance_carried_minor, created_at, finalized_at, paid_at)
SELECT m, s, k, ps, pe, st, n, c, pc, pv, sub, dis, cr, tr, tx, tot, tot, ap, ca, at, at,
    CASE WHEN st = 'paid' THEN at END
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::bigint[], $12::bigint[],
    $13::bigint[], $14::numeric[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[],
    $19::timestamptz[])
    AS new (m, s, k, ps, pe, st, n, c, pc, pv, sub, dis, cr, tr, tx, tot, ap, ca, at)
ON CONFLICT (merchant_id, subscription_id, period_start, kind) DO NOTHING
RETURNING merchant_id, subscription_id, period_start, kind, id
"""

_INSERT_LINES = """
INSERT INTO invoice_lines (merchant_id, invoice_id, position, kind, charge_code, description,
    quantity, unit_price, rate, amount_minor, currency, period_start, period_end, explanation)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[],
    $7::numeric[], $8::numeric[], $9::numeric[], $10::bigint[], $11::text[],
    $12::timestamptz[], $13::timestamptz[], $14::text[])
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
    new = NewInvoice(merchant_id, subscription_id, kind, period_start, period_end, draft, now)
    number = await numbering.next_number(merchant_id)
    return (await write([new], [number]))[0]


async def write(new: Sequence[NewInvoice], numbers: Sequence[str]) -> list[Finalized]:
    """Write finalized invoices with the numbers taken for them (``numbering``), in the caller's
    transaction: their lines, their Stripe pushes and their events, a few statements for the
    lot. Raises AlreadyInvoiced when any of the periods has its invoice (the caller's rollback
    gives back every number taken)."""
    connection = transaction_connection()
    rows = await connection.fetch(
        _INSERT_INVOICES,
        [x.merchant_id for x in new],
        [x.subscription_id for x in new],
        [x.kind for x in new],
        [x.period_start for x in new],
        [x.period_end for x in new],
        [x.status for x in new],
        list(numbers),
        [x.draft.currency for x in new],
        [x.draft.plan_code for x in new],
        [x.draft.plan_version for x in new],
        [x.draft.subtotal_minor for x in new],
        [x.draft.discounts_minor for x in new],
        [x.draft.credits_minor for x in new],
        [x.draft.tax_rate for x in new],
        [x.draft.tax_minor for x in new],
        [x.draft.total_minor for x in new],
        [x.draft.credit_balance_applied_minor for x in new],
        [x.draft.credit_balance_carried_forward_minor for x in new],
        [x.now for x in new],
    )
    ids = {
        (row["merchant_id"], row["subscription_id"], row["period_start"], row["kind"]): row["id"]
        for row in rows
    }
    if len(ids) < len(new):
        taken = next(
            x for x in new if (x.merchant_id, x.subscription_id, x.period_start, x.kind) not in ids
        )
        raise AlreadyInvoiced(f"{taken.kind} invoice for {taken.period_start.isoformat()} exists")
    made = [
        Finalized(
            id=ids[(x.merchant_id, x.subscription_id, x.period_start, x.kind)],
            merchant_id=x.merchant_id,
            subscription_id=x.subscription_id,
            kind=x.kind,
            period_start=x.period_start,
            period_end=x.period_end,
            number=number,
            total_minor=x.draft.total_minor,
            currency=x.draft.currency,
        )
        for x, number in zip(new, numbers, strict=True)
    ]
    lines = [
        (invoice, position, line)
        for invoice, x in zip(made, new, strict=True)
        for position, line in enumerate(x.draft.lines, start=1)
    ]
    if lines:
        await connection.execute(
            _INSERT_LINES,
            [invoice.merchant_id for invoice, _, _ in lines],
            [invoice.id for invoice, _, _ in lines],
            [position for _, position, _ in lines],
            [line.kind for _, _, line in lines],
            [line.charge_code for _, _, line in lines],
            [line.description[:200] for _, _, line in lines],
            [line.quantity for _, _, line in lines],
            [line.unit_price for _, _, line in lines],
            [line.rate for _, _, line in lines],
            [line.amount_minor for _, _, line in lines],
            [line.currency for _, _, line in lines],
            [line.period_start for _, _, line in lines],
            [line.period_end for _, _, line in lines],
            [line.explanation[:400] for _, _, line in lines],
        )
    # Pushed to Stripe, which collects what is due.
    await enqueue_many(
        [
            (invoice.merchant_id, Command.INVOICE_PUSH, {"invoice_id": str(invoice.id)})
            for invoice in made
            if invoice.total_minor > 0
        ]
    )
    listened = await emit.listened_among(
        {invoice.merchant_id for invoice in made}, emit.INVOICE_FINALIZED_TYPES
    )
    for invoice, x in zip(made, new, strict=True):
        if invoice.merchant_id in listened:
            await emit.invoice_finalized(invoice.merchant_id, invoice.id, status=x.status, at=x.now)
    return made


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
