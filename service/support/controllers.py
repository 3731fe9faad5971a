"""HTTP: the support view, ``/finance/support``, on the finance page's session (or a bearer
key): find a merchant, see its dossier, open its invoices' documents. Operators with
``support:read``; a merchant key gets 403. Every dossier and document opened is audited."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from service.errors import InvalidInput
from service.finance import session
from service.finance.controllers import html_page, viewer
from service.invoicing import credit_notes, invoices, render
from service.support import dossier, page
from service.support.reads import record_look
from service.tenancy import merchants
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

    @get("/merchants/{merchant_id:uuid}/invoices/{invoice_id:uuid}")
    async def invoice_document(
        self,
        request: Request[Any, Any, Any],
        merchant_id: FromPath[UUID],
        invoice_id: FromPath[UUID],
    ) -> Response[str]:
        """The invoice's printable document, as the merchant gets it (the look is audited)."""
        principal = await _support_viewer(request)
        if principal is None:
            return _to_login()
        invoice = await invoices.get(merchant_id, invoice_id)
        await record_look(_actor(request, principal), merchant_id, reading="invoice_document")
        lines = await invoices.lines(merchant_id, invoice.id)
        notes = await credit_notes.for_invoice(merchant_id, invoice.id)
        merchant = await merchants.get(merchant_id)
        return html_page(render.invoice_html(invoice, lines, merchant, notes))
