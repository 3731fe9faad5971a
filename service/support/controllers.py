"""HTTP: the support view, ``/finance/support``, on the finance page's session (or a bearer
key): find a merchant, see its dossier, open its invoices' documents. Operators with
``support:read``; a merchant key gets 403. Every dossier and document opened is audited."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from service.errors import InvalidInput, NotFound
from service.finance import session
from service.finance.controllers import html_page, viewer
from service.html import pdf_response
from service.invoicing import document, pdf, render
from service.settings import Settings
from service.support import dossier, page
from service.support.reads import record_look
from service.tenancy.auth import PUBLIC
from service.tenancy.principal import Actor, Principal

SUPPORT_REFUSAL = "the support view is for operators with the support:read scope"


async def _support_viewer(request: Request[Any, Any, Any]) -> Principal | None:
    return await viewer(request, may_see=session.may_support, refusal=SUPPORT_REFUSAL)


def _to_login() -> Response[str]:
    return Response("", status_code=303, headers={"Location": "/finance/login"})


def _actor(request: Request[Any, Any, Any], principal: Principal) -> Actor:
    return Actor.of(principal, request_id=request.scope.get("state", {}).get("request_id", ""))


class SupportPageController(Controller):
    """Not in the API schema: an HTML page that does its own authentication."""

    path = "/finance/support"
    opt = PUBLIC
    include_in_schema = False

    @get("/")
    async def find(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[str, QueryParameter(name="q", max_length=200)] = "",
    ) -> Response[str]:
        """Find a merchant by name, e-mail, id or Stripe customer id."""
        if await _support_viewer(request) is None:
            return _to_login()
        if "\x00" in q:
            raise InvalidInput("the search text holds a NUL character", field="q")
        return html_page(page.render_search(q, await dossier.search(q)))

    @get("/merchants/{merchant_id:uuid}")
    async def merchant(
        self, request: Request[Any, Any, Any], merchant_id: FromPath[UUID]
    ) -> Response[str]:
        """One merchant's dossier (the look is audited)."""
        principal = await _support_viewer(request)
        if principal is None:
            return _to_login()
        await record_look(_actor(request, principal), merchant_id, reading="support_view")
        return html_page(page.render_dossier(await dossier.gather(merchant_id)))

    @get("/merchants/{merchant_id:uuid}/invoices/{invoice_ref:str}")
    async def invoice_document(
        self,
        request: Request[Any, Any, Any],
        merchant_id: FromPath[UUID],
        invoice_ref: FromPath[str],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        """The invoice's document, as the merchant gets it: ``{id}`` (HTML) or ``{id}.pdf``
        (the look is audited)."""
        principal = await _support_viewer(request)
        if principal is None:
            return _to_login()
        as_pdf = invoice_ref.endswith(".pdf")
        try:
            invoice_id = UUID(invoice_ref.removesuffix(".pdf"))
        except ValueError:
            raise NotFound(f"invoice {invoice_ref} not found") from None
        sheet = await document.load(merchant_id, invoice_id, settings.seller)
        await record_look(_actor(request, principal), merchant_id, reading="invoice_document")
        if as_pdf:
            return pdf_response(await asyncio.to_thread(pdf.invoice_pdf, sheet), sheet.filename)
        return html_page(render.invoice_html(sheet, pdf_href=f"{invoice_id}.pdf"))
