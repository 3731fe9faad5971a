"""Request and response bodies for invoices, credit notes and SLA reports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from service.db.tables import CreditNote, Invoice, Payment
from service.subscriptions.schemas import LineOut
from service.wire import Input, Output

Fraction = Annotated[
    Decimal, msgspec.Meta(description="A fraction as a decimal string: '0.875' is 87.5%")
]


class InvoiceLineOut(LineOut):
    """A line as stored on a finalized invoice: the rated line plus its position."""

    position: int


class CreditNoteOut(Output):
    id: UUID
    merchant_id: UUID
    invoice_id: UUID
    number: str
    amount_minor: int
    currency: str
    reason: str
    memo: str
    kind: str
    """``pre_payment`` lowered the amount due; ``post_payment`` is money to give back."""
    refund_status: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: CreditNote) -> CreditNoteOut:
        return cls(**{name: getattr(row, name) for name in cls.__struct_fields__})


class PaymentOut(Output):
    """Money Stripe collected for an invoice. The payment intent and its charge are filled in
    once Stripe has said which they are (shortly after ``paid_at``); finance matches the charge
    with Stripe's balance, the exports carry it."""

    id: UUID
    amount_minor: int
    currency: str
    paid_at: datetime
    stripe_invoice_id: str
    stripe_payment_intent_id: str | None
    stripe_charge_id: str | None

    @classmethod
    def from_row(cls, row: Payment) -> PaymentOut:
        return cls(**{name: getattr(row, name) for name in cls.__struct_fields__})


class InvoiceOut(Output):
    id: UUID
    merchant_id: UUID
    subscription_id: UUID
    kind: str
    number: str | None
    status: str
    currency: str
    plan_code: str
    plan_version: int
    period_start: datetime
    period_end: datetime
    subtotal_minor: int
    discounts_minor: int
    credits_minor: int
    tax_rate: Decimal
    tax_minor: int
    total_minor: int
    amount_due_minor: int
    amount_paid_minor: int
    amount_credited_minor: int
    credit_balance_applied_minor: int
    credit_balance_carried_minor: int
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    collection_method: str | None = None
    """``charge_automatically`` (charged to the merchant's saved card) or ``send_invoice`` (sent:
    paid on ``payment_url``); null until the invoice reaches Stripe."""
    due_at: datetime | None = None
    """When a sent invoice is due (overdue after it: dunning)."""
    payment_url: str | None = None
    """While the invoice is open: Stripe's hosted invoice page, where it is paid (card, or ways
    that cannot be saved such as WeChat Pay)."""
    lines: list[InvoiceLineOut] | None = None
    credit_notes: list[CreditNoteOut] | None = None
    payments: list[PaymentOut] | None = None
    """With one invoice (not in lists): what Stripe collected for it."""

    @classmethod
    def from_row(
        cls,
        row: Invoice,
        *,
        lines: list[dict[str, Any]] | None = None,
        notes: list[CreditNote] | None = None,
        payments: list[Payment] | None = None,
    ) -> InvoiceOut:
        fields = {
            name: getattr(row, name)
            for name in cls.__struct_fields__
            if name not in ("lines", "credit_notes", "payments", "payment_url")
        }
        return cls(
            **fields,
            payment_url=row.hosted_invoice_url if row.status == "open" else None,
            lines=[
                InvoiceLineOut(**{k: line[k] for k in InvoiceLineOut.__struct_fields__})
                for line in lines
            ]
            if lines is not None
            else None,
            credit_notes=[CreditNoteOut.from_row(n) for n in notes] if notes is not None else None,
            payments=[PaymentOut.from_row(p) for p in payments] if payments is not None else None,
        )


IssuableReason = Literal["sla_credit", "goodwill", "billing_error", "duplicate", "stripe_refund"]
"""The reasons an operator may give; ``credit_balance`` notes come from the balance alone."""


class CreditNoteCreate(Input):
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    reason: IssuableReason
    memo: Annotated[str, msgspec.Meta(max_length=500)] = ""


class FaultIn(Input):
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    unresolved_hours: Annotated[Decimal, msgspec.Meta(description="Hours, e.g. '30.5'")]


class SlaReportCreate(Input):
    merchant_id: UUID
    period_start: datetime
    """The start of the subscription period the figures are for."""
    faults: list[FaultIn] = []
    csat: Fraction | None = None
    first_response_seconds: Annotated[Decimal, msgspec.Meta(description="Median FRT")] | None = None
    first_contact_resolution: Fraction | None = None
    share_over_sla: Fraction | None = None


class SlaReportOut(Output):
    id: UUID
    merchant_id: UUID
    subscription_id: UUID
    period_start: datetime
    period_end: datetime
    applied_as: str
    """``pending`` (credit lines on the period's invoice) or ``credit_note``."""
    credit_note_id: UUID | None


class CreditBalanceMovementOut(Output):
    seq: int
    """1, 2, 3… in the order the balance moved."""
    kind: str
    """``carried_forward`` (+: an invoice's credits beyond its charges), ``credit_note`` (−: on an
    open invoice), ``applied_to_invoice`` (−: a line of a new invoice), ``refund`` (−: a credit
    note with a refund on a paid invoice, once nothing more will be invoiced), ``opening``."""
    amount_minor: int
    balance_after_minor: int
    currency: str
    invoice_id: UUID | None
    invoice_number: str | None
    credit_note_id: UUID | None
    credit_note_number: str | None
    memo: str
    created_at: datetime


class CreditBalanceOut(Output):
    merchant_id: UUID
    currency: str
    balance_minor: int
    """What is left: it goes to the next invoice, or stays when nothing can take it."""
    movements: list[CreditBalanceMovementOut]

    @classmethod
    def from_balance(cls, balance: Any) -> CreditBalanceOut:
        fields = CreditBalanceMovementOut.__struct_fields__
        return cls(
            merchant_id=balance.merchant_id,
            currency=balance.currency,
            balance_minor=balance.balance_minor,
            movements=[
                CreditBalanceMovementOut(**{name: getattr(m, name) for name in fields})
                for m in balance.movements
            ],
        )
