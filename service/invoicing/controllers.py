"""HTTP: invoices (JSON and HTML), voids, credit notes and SLA reports. Thin."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from plans.periods import calendar_period_containing, zone
from plans.sla import FaultRecord
from service.audit import log as audit
from service.db.engine import current as current_database
from service.db.tables import CreditNote, Invoice
from service.errors import InvalidInput, NotFound
from service.html import html_response, pdf_response
from service.invoicing import (
    credit_balance,
    credit_notes,
    document,
    invoices,
    pdf,
    render,
    sla_reports,
)
from service.invoicing.schemas import (
    CreditBalanceOut,
    CreditNoteCreate,
    CreditNoteOut,
    InvoiceOut,
    SlaReportCreate,
    SlaReportOut,
)
from service.problems import responses
from service.settings import Settings
from service.subscriptions import clocks
from service.tenancy import merchants
from service.tenancy.auth import DOCUMENTS_FOR_FINANCE_SESSIONS, operator_only
from service.tenancy.principal import Actor
from service.tenancy.scope import TenantScope, scoped
from service.wire import MONTH_HINT, MONTH_REGEX

_INVOICE_REF = re.compile(r"^([0-9a-fA-F-]{36})(\.html|\.pdf)?$")
InvoiceStatus = Annotated[
    str | None, QueryParameter(name="status", pattern="^(draft|open|paid|void|uncollectible)$")
]
PeriodMonth = Annotated[
    str | None, QueryParameter(name="period", pattern=MONTH_REGEX, description=MONTH_HINT)
]


class InvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["invoices"]

    @get("/", summary="List invoices", responses=responses(400, 401))
    async def list_invoices(
        self,
        tenant: NamedDependency[TenantScope],
        status: InvoiceStatus = None,
        period: PeriodMonth = None,
        merchant_id: FromQuery[UUID | None] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> list[InvoiceOut]:
        """Invoices, newest period first; ``period`` (YYYY-MM) matches periods that start in
        that month (Asia/Shanghai); operators may filter by ``merchant_id``."""
        query = scoped(
            Invoice.objects().order_by(Invoice.period_start, ascending=False),
            Invoice,
            tenant.narrowed(merchant_id),
        )
        if status is not None:
            query = query.where(Invoice.status == status)
        if period is not None:
            year, month = (int(part) for part in period.split("-"))
            if not 1 <= month <= 12:
                raise InvalidInput("period must be YYYY-MM", field="period")
            window = calendar_period_containing(
                datetime(year, month, 15, tzinfo=zone("Asia/Shanghai")), "Asia/Shanghai"
            )
            query = query.where(Invoice.period_start >= window.start).where(
                Invoice.period_start < window.end
            )
        return [InvoiceOut.from_row(row) for row in await query.limit(limit)]

    @get(
        "/{invoice_ref:str}",
        summary="One invoice, or its document (HTML, PDF)",
        responses=responses(401, 403, 404),
        opt=DOCUMENTS_FOR_FINANCE_SESSIONS,
        description=(
            "`{id}` answers JSON with lines, credit notes and payments (with their Stripe "
            "payment intent and charge). `{id}.html` and `{id}.pdf` answer the invoice document "
            "for people (seller, merchant, status, lines in the merchant's zone, totals, the "
            "payment link while something is due). The documents also open in a browser with a "
            "finance page session (an operator key with `finance:read`)."
        ),
    )
    async def get_invoice(
        self,
        tenant: NamedDependency[TenantScope],
        invoice_ref: FromPath[str],
        settings: NamedDependency[Settings],
    ) -> Response[object]:
        """One invoice with its lines (``.html``: the printable document; ``.pdf``: as PDF)."""
        match = _INVOICE_REF.match(invoice_ref)
        if match is None:
            raise NotFound(f"invoice {invoice_ref} not found")
        try:
            invoice_id = UUID(match.group(1))
        except ValueError:
            raise NotFound(f"invoice {invoice_ref} not found") from None
        if match.group(2):
            sheet = await document.load(tenant.merchant_id, invoice_id, settings.seller)
            if match.group(2) == ".pdf":
                content = await asyncio.to_thread(pdf.invoice_pdf, sheet)
                return pdf_response(content, sheet.filename)  # type: ignore[return-value]
            return html_response(  # type: ignore[return-value]
                render.invoice_html(sheet, pdf_href=f"{invoice_id}.pdf")
            )
        invoice = await invoices.get(tenant.merchant_id, invoice_id)
        lines = await invoices.lines(invoice.merchant_id, invoice.id)
        notes = await credit_notes.for_invoice(invoice.merchant_id, invoice.id)
        paid = await invoices.payments(invoice.merchant_id, invoice.id)
        return Response(InvoiceOut.from_row(invoice, lines=lines, notes=notes, payments=paid))

    @post(
        "/{invoice_id:uuid}/void",
        summary="Void an invoice",
        status_code=200,
        guards=[operator_only],
        responses=responses(401, 403, 404, 409),
    )
    async def void_invoice(
        self, invoice_id: FromPath[UUID], actor: NamedDependency[Actor]
    ) -> InvoiceOut:
        """Void an open invoice with no payments (operators)."""
        async with current_database().engine.transaction():
            invoice = await invoices.get(None, invoice_id)
            now = (await clocks.clock_for_merchant(invoice.merchant_id)).now()
            invoice = await invoices.void(None, invoice_id, now=now)
            await audit.record(
                actor,
                merchant_id=invoice.merchant_id,
                entity="invoice",
                entity_id=invoice.id,
                action="voided",
                changes={"number": invoice.number},
            )
        return InvoiceOut.from_row(invoice)

    @post(
        "/{invoice_id:uuid}/credit-notes",
        summary="Issue a credit note",
        guards=[operator_only],
        responses=responses(400, 401, 403, 404, 409, 422),
    )
    async def create_credit_note(
        self,
        invoice_id: FromPath[UUID],
        data: JSONBody[CreditNoteCreate],
        actor: NamedDependency[Actor],
    ) -> CreditNoteOut:
        """Credit part or all of a finalized invoice; on a paid invoice it becomes a refund."""
        async with current_database().engine.transaction():
            invoice = await invoices.get(None, invoice_id)
            now = (await clocks.clock_for_merchant(invoice.merchant_id)).now()
            note, _ = await credit_notes.issue(
                None,
                invoice_id,
                amount_minor=data.amount_minor,
                reason=credit_notes.Reason(data.reason),
                memo=data.memo,
                now=now,
            )
            await audit.record(
                actor,
                merchant_id=note.merchant_id,
                entity="credit_note",
                entity_id=note.id,
                action="issued",
                changes={
                    "invoice": invoice.number,
                    "amount_minor": note.amount_minor,
                    "reason": note.reason,
                },
            )
        return CreditNoteOut.from_row(note)


class CreditNoteController(Controller):
    path = "/v1/credit-notes"
    tags = ["invoices"]

    @get("/", summary="List credit notes", responses=responses(401))
    async def list_credit_notes(
        self,
        tenant: NamedDependency[TenantScope],
        merchant_id: FromQuery[UUID | None] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> list[CreditNoteOut]:
        """Credit notes, newest first (operators may filter by ``merchant_id``)."""
        query = scoped(
            CreditNote.objects().order_by(
                CreditNote.created_at, CreditNote.number, ascending=False
            ),
            CreditNote,
            tenant.narrowed(merchant_id),
        )
        return [CreditNoteOut.from_row(row) for row in await query.limit(limit)]


class CreditBalanceController(Controller):
    path = "/v1/credit-balance"
    tags = ["invoices"]

    @get(
        "/",
        summary="A merchant's credit balance and its movements",
        responses=responses(400, 401, 404, 422),
    )
    async def get_credit_balance(
        self, tenant: NamedDependency[TenantScope], merchant_id: FromQuery[UUID | None] = None
    ) -> CreditBalanceOut:
        """The merchant's credit balance and every movement of it: credits carried in by
        invoices, and where they went (open invoices as credit notes, later invoices as a line,
        refunds once nothing more is invoiced). Operators name the ``merchant_id``."""
        target = tenant.narrowed(merchant_id)
        if target is None:
            raise InvalidInput("name the merchant: ?merchant_id=<id>", field="merchant_id")
        await merchants.get(target)  # another merchant's (or an unknown) id: 404
        async with current_database().pool.acquire() as connection:
            balance = await credit_balance.balance_of(target, connection)
        return CreditBalanceOut.from_balance(balance)


class SlaReportController(Controller):
    path = "/v1/sla-reports"
    tags = ["invoices"]
    guards = [operator_only]

    @post(
        "/",
        summary="Report service levels (SLA)",
        responses=responses(400, 401, 403, 404, 409, 422),
    )
    async def submit(
        self, data: JSONBody[SlaReportCreate], actor: NamedDependency[Actor]
    ) -> SlaReportOut:
        """A merchant's service figures for one period; they become SLA credits."""
        try:
            faults = [
                FaultRecord(reference=f.reference, unresolved_hours=f.unresolved_hours)
                for f in data.faults
            ]
        except ValueError as error:
            raise InvalidInput(str(error), field="faults") from None
        async with current_database().engine.transaction():
            await merchants.get(data.merchant_id)
            now = (await clocks.clock_for_merchant(data.merchant_id)).now()
            row, note_id = await sla_reports.submit(
                data.merchant_id,
                data.period_start,
                faults=faults,
                csat=data.csat,
                first_response_seconds=data.first_response_seconds,
                first_contact_resolution=data.first_contact_resolution,
                share_over_sla=data.share_over_sla,
                now=now,
            )
            await audit.record(
                actor,
                merchant_id=data.merchant_id,
                entity="sla_report",
                entity_id=row.id,
                action="submitted",
                changes={
                    "period_start": data.period_start.isoformat(),
                    "credit_note_id": str(note_id) if note_id else None,
                },
            )
        return SlaReportOut(
            id=row.id,
            merchant_id=row.merchant_id,
            subscription_id=row.subscription_id,
            period_start=row.period_start,
            period_end=row.period_end,
            applied_as="credit_note" if note_id else "pending",
            credit_note_id=note_id,
        )
