"""Credit notes: corrections to a finalized invoice, for part or all of it.

On an open invoice a credit note lowers the amount due; on a paid one it is money to give
back (a refund the Stripe sync sends). Credit notes never add up to more than the invoice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import structlog

from service.db.tables import CreditNote, Invoice
from service.errors import Conflict, InvalidInput
from service.invoicing import invoices, numbering
from service.outgoing import emit
from service.stripe_outbox import Command, enqueue

log = structlog.get_logger(__name__)


class Reason(StrEnum):
    SLA_CREDIT = "sla_credit"
    GOODWILL = "goodwill"
    BILLING_ERROR = "billing_error"
    DUPLICATE = "duplicate"
    STRIPE_REFUND = "stripe_refund"
    CREDIT_BALANCE = "credit_balance"
    """The merchant's credit balance reaching this invoice (`service.invoicing.credit_balance`
    is the only issuer: the balance goes down by the same amount in the same transaction)."""


async def issue(
    merchant_id: UUID | None,
    invoice_id: UUID,
    *,
    amount_minor: int,
    reason: Reason,
    memo: str,
    now: datetime,
    refund_status: str | None = None,
) -> tuple[CreditNote, Invoice]:
    """Issue a credit note in the caller's transaction (the invoice row is locked)."""
    invoice = await invoices.get(merchant_id, invoice_id, lock=True)
    if invoice.status not in ("open", "paid"):
        raise Conflict(
            f"credit notes are issued against open or paid invoices; {invoice.number} is "
            f"{invoice.status}"
        )
    if amount_minor <= 0:
        raise InvalidInput("amount_minor must be positive", field="amount_minor")
    room = invoice.total_minor - invoice.amount_credited_minor
    if amount_minor > room:
        raise InvalidInput(
            f"credit notes on {invoice.number} may total at most {invoice.total_minor}; "
            f"{invoice.amount_credited_minor} is already credited, so at most {room} remains",
            field="amount_minor",
        )
    existing = (
        await CreditNote.count()
        .where(CreditNote.merchant_id == invoice.merchant_id)
        .where(CreditNote.invoice_id == invoice.id)
    )
    assert invoice.number is not None
    was_paid = invoice.status == "paid" and invoice.amount_paid_minor > 0
    was_open = invoice.status == "open"
    note = CreditNote(
        merchant_id=invoice.merchant_id,
        invoice_id=invoice.id,
        number=numbering.credit_note_number(invoice.number, existing + 1),
        amount_minor=amount_minor,
        currency=invoice.currency,
        reason=reason.value,
        memo=memo,
        kind="post_payment" if was_paid else "pre_payment",
        refund_status=refund_status or ("pending" if was_paid else "none"),
        created_at=now,
    )
    await note.save()
    invoice.amount_credited_minor += amount_minor
    columns = [Invoice.amount_credited_minor]
    if not was_paid:
        invoice.amount_due_minor = max(invoice.amount_due_minor - amount_minor, 0)
        columns.append(Invoice.amount_due_minor)
        if invoice.amount_due_minor == 0 and invoice.status == "open":
            invoice.status = "paid"
            invoice.paid_at = now
            columns += [Invoice.status, Invoice.paid_at]
    await invoice.save(columns)
    await enqueue(
        invoice.merchant_id,
        Command.CREDIT_NOTE_PUSH,
        {"credit_note_id": str(note.id), "invoice_id": str(invoice.id)},
    )
    await emit.credit_note_issued(note, at=now)
    if was_open and invoice.status == "paid":  # credited in full
        await emit.invoice_paid(invoice.merchant_id, invoice.id, at=now)
    log.info(
        "credit_note_issued",
        credit_note=note.number,
        invoice_id=str(invoice.id),
        amount_minor=amount_minor,
        kind=note.kind,
        reason=reason.value,
    )
    return note, invoice


async def for_invoice(merchant_id: UUID, invoice_id: UUID) -> list[CreditNote]:
    return (
        await CreditNote.objects()
        .where(CreditNote.merchant_id == merchant_id)
        .where(CreditNote.invoice_id == invoice_id)
        .order_by(CreditNote.created_at)
    )
