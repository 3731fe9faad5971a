"""The invoice as people read it: who bills whom, for what, in the merchant's zone (named), and
how to pay. One model, rendered as HTML (`render`) and as PDF (`pdf`), so both say the same.

The words come from what the invoice stores (lines, totals, credit notes) and the seller's
details from settings (``BILLING_SELLER_*``); nothing is computed again here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Final
from uuid import UUID

from plans.money import format_minor
from plans.periods import zone
from service.db.tables import CreditNote, Invoice, Merchant
from service.invoicing import credit_notes, invoices
from service.settings import SellerSettings
from service.tenancy import merchants

STATUS_WORDS: Final = {
    "draft": "Draft",
    "open": "Open: payment due",
    "paid": "Paid",
    "void": "Void: nothing is due",
    "uncollectible": "Uncollectible",
}
CREDIT_NOTE_REASONS: Final = {
    "sla_credit": "SLA credit",
    "goodwill": "Goodwill",
    "billing_error": "Billing error",
    "duplicate": "Duplicate charge",
    "stripe_refund": "Refund made in Stripe",
    "credit_balance": "Credit balance",
}


@dataclass(frozen=True, slots=True)
class PaymentLink:
    url: str
    label: str
    note: str


@dataclass(frozen=True, slots=True)
class DocumentLine:
    description: str
    explanation: str
    covers: str
    amount: str


@dataclass(frozen=True, slots=True)
class TotalRow:
    label: str
    amount: str
    is_grand: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    number: str
    status: str
    status_words: str
    seller: SellerSettings
    buyer: tuple[str, ...]
    """The merchant: name, contact, reference, zone — one line each."""
    facts: tuple[tuple[str, str], ...]
    """(label, value): issued, period, plan, time zone, ..."""
    lines: tuple[DocumentLine, ...]
    totals: tuple[TotalRow, ...]
    payment: PaymentLink | None
    timezone: str
    issued_at: datetime | None

    @property
    def title(self) -> str:
        return f"Invoice {self.number}"

    @property
    def filename(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.number)
        return f"invoice-{safe}.pdf"


def payment_link(invoice: Invoice, tz: Any = None) -> PaymentLink | None:
    """How the merchant pays this invoice online, if it can be paid now: Stripe's hosted invoice
    page once Stripe has one and something is due — and, for an invoice sent to the merchant
    (no card saved, or terms paying by transfer), by when (its due date in ``tz``).

    The one place that decides the payment link on a document: both renderings follow."""
    url = invoice.hosted_invoice_url or ""
    if invoice.status != "open" or invoice.amount_due_minor <= 0:
        return None
    if not url.startswith(("https://", "http://")):
        return None  # no page yet (not pushed to Stripe), or nothing we would link to
    due = format_minor(invoice.amount_due_minor, invoice.currency)
    note = "the secure payment page Stripe keeps for this invoice"
    if invoice.due_at is not None and tz is not None:
        note += f"; due by {invoice.due_at.astimezone(tz):%Y-%m-%d}"
    return PaymentLink(url=url, label=f"Pay {due} online", note=note)


def _local(instant: datetime, tz: Any) -> str:
    """``2026-11-16 14:37``, or ``2026-11-16`` at midnight, in the merchant's zone."""
    local = instant.astimezone(tz)
    return f"{local:%Y-%m-%d}" if local.time() == time() else f"{local:%Y-%m-%d %H:%M}"


def build(
    invoice: Invoice,
    lines: list[dict[str, Any]],
    merchant: Merchant,
    notes: list[CreditNote],
    seller: SellerSettings,
) -> InvoiceDocument:
    tz_name = merchant.timezone
    tz = zone(tz_name)

    def money(minor: int) -> str:
        return format_minor(minor, invoice.currency)

    period = (
        f"{invoice.period_start.astimezone(tz):%Y-%m-%d %H:%M} – "
        f"{invoice.period_end.astimezone(tz):%Y-%m-%d %H:%M}"
    )
    facts = [
        ("Issued", _local(invoice.finalized_at, tz) if invoice.finalized_at else "not yet"),
        ("Period", period),
        ("Time zone", f"{tz_name} (every date and time on this invoice)"),
        ("Plan", f"{invoice.plan_code} v{invoice.plan_version}"),
        ("Currency", invoice.currency),
    ]
    if invoice.paid_at is not None and invoice.status == "paid":
        facts.append(("Paid", _local(invoice.paid_at, tz)))
    if invoice.voided_at is not None:
        facts.append(("Voided", _local(invoice.voided_at, tz)))
    if invoice.stripe_number:
        facts.append(("Stripe invoice", invoice.stripe_number))
    rows = tuple(
        DocumentLine(
            description=line["description"],
            explanation=line["explanation"],
            covers=f"{_local(line['period_start'], tz)} – {_local(line['period_end'], tz)}",
            amount=money(line["amount_minor"]),
        )
        for line in lines
    )
    tax_percent = f"{invoice.tax_rate * 100:.2f}".rstrip("0").rstrip(".")
    totals = [
        TotalRow("Subtotal", money(invoice.subtotal_minor)),
        TotalRow("Discounts", money(invoice.discounts_minor)),
        TotalRow("Credits", money(invoice.credits_minor)),
        TotalRow(f"Tax ({tax_percent}%)", money(invoice.tax_minor)),
        TotalRow("Total", money(invoice.total_minor), is_grand=True),
    ]
    for note in notes:
        reason = CREDIT_NOTE_REASONS.get(note.reason, note.reason)
        totals.append(
            TotalRow(
                f"Credit note {note.number} ({reason}, {_local(note.created_at, tz)})",
                money(-note.amount_minor),
            )
        )
    totals += [
        TotalRow("Paid", money(invoice.amount_paid_minor)),
        TotalRow("Amount due", money(invoice.amount_due_minor), is_grand=True),
    ]
    buyer = [merchant.name]
    if merchant.contact_email:
        buyer.append(merchant.contact_email)
    buyer.append(f"Customer reference {merchant.id}")
    return InvoiceDocument(
        number=invoice.number or "(draft)",
        status=invoice.status,
        status_words=STATUS_WORDS.get(invoice.status, invoice.status),
        seller=seller,
        buyer=tuple(buyer),
        facts=tuple(facts),
        lines=rows,
        totals=tuple(totals),
        payment=payment_link(invoice, tz),
        timezone=tz_name,
        issued_at=invoice.finalized_at,
    )


async def load(
    merchant_id: UUID | None, invoice_id: UUID, seller: SellerSettings
) -> InvoiceDocument:
    """The document of an invoice within a tenant scope (``None``: an operator's, any
    merchant); another merchant's invoice is not found."""
    invoice = await invoices.get(merchant_id, invoice_id)
    lines = await invoices.lines(invoice.merchant_id, invoice.id)
    notes = await credit_notes.for_invoice(invoice.merchant_id, invoice.id)
    merchant = await merchants.get(invoice.merchant_id)
    return build(invoice, lines, merchant, notes, seller)
