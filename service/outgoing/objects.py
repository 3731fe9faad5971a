"""The objects events carry, built with the API's own output schemas, so that ``data.object`` is
what the matching GET answers at that moment: a subscription as ``GET /v1/subscriptions``
lists it, an invoice as ``GET /v1/invoices/{id}`` answers it (lines and credit notes), ...

Read inside the transaction of the change (its own writes are visible). This module reads the
tables directly rather than through the domain modules that emit events, which would import
each other in a circle.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from plans.lines import InvoiceLine
from service.db.tables import (
    CreditNote,
    Invoice,
    InvoiceLineRow,
    Merchant,
    Payment,
    PaymentMethodRow,
    PendingLine,
)
from service.db.tables import Subscription as SubscriptionRow
from service.invoicing.schemas import CreditNoteOut, InvoiceOut
from service.subscriptions.schemas import SubscriptionOut
from service.tenancy.schemas import MerchantOut


async def subscription(sub: SubscriptionRow) -> SubscriptionOut:
    rows = (
        await PendingLine.select(PendingLine.line)
        .where(PendingLine.merchant_id == sub.merchant_id)
        .where(PendingLine.subscription_id == sub.id)
        .where(PendingLine.invoice_id.is_null())
        .order_by(PendingLine.created_at)
    )
    pending = [msgspec.json.decode(row["line"], type=InvoiceLine) for row in rows]
    return SubscriptionOut.from_row(sub, pending=pending)


async def subscription_by_id(merchant_id: UUID, subscription_id: UUID) -> SubscriptionOut | None:
    row = (
        await SubscriptionRow.objects()
        .where(SubscriptionRow.merchant_id == merchant_id)
        .where(SubscriptionRow.id == subscription_id)
        .first()
    )
    return await subscription(row) if row is not None else None


async def invoice(merchant_id: UUID, invoice_id: UUID) -> InvoiceOut:
    row = (
        await Invoice.objects()
        .where(Invoice.merchant_id == merchant_id)
        .where(Invoice.id == invoice_id)
        .first()
    )
    if row is None:
        raise LookupError(f"invoice {invoice_id} of merchant {merchant_id} is not there")
    lines = (
        await InvoiceLineRow.select()
        .where(InvoiceLineRow.merchant_id == merchant_id)
        .where(InvoiceLineRow.invoice_id == invoice_id)
        .order_by(InvoiceLineRow.position)
    )
    notes = (
        await CreditNote.objects()
        .where(CreditNote.merchant_id == merchant_id)
        .where(CreditNote.invoice_id == invoice_id)
        .order_by(CreditNote.created_at)
    )
    payments = (
        await Payment.objects()
        .where(Payment.merchant_id == merchant_id)
        .where(Payment.invoice_id == invoice_id)
        .order_by(Payment.paid_at)
    )
    return InvoiceOut.from_row(row, lines=lines, notes=notes, payments=payments)


def credit_note(note: CreditNote) -> CreditNoteOut:
    return CreditNoteOut.from_row(note)


async def merchant(merchant_id: UUID) -> MerchantOut:
    row = await Merchant.objects().where(Merchant.id == merchant_id).first()
    if row is None:
        raise LookupError(f"merchant {merchant_id} is not there")
    method = None
    if row.default_payment_method_id is not None:
        method = (
            await PaymentMethodRow.objects()
            .where(PaymentMethodRow.merchant_id == merchant_id)
            .where(PaymentMethodRow.id == row.default_payment_method_id)
            .first()
        )
    return MerchantOut.from_row(row, method)
