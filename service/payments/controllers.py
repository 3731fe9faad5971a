"""HTTP: payment-setup links, the billing portal, and the pages Stripe sends merchants back to.
Thin: parse, authorize, call ``service.payments.setup``, shape the answer."""

from __future__ import annotations

from litestar import Controller, MediaType, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect

from service.clock import SYSTEM_CLOCK
from service.html import html_response
from service.payments import setup
from service.payments.schemas import BillingPortalOut, PaymentSetupOut, PaymentSetupRequest
from service.payments.setup import HostedPages
from service.problems import responses
from service.ratelimit import RateLimiter
from service.tenancy.auth import PUBLIC
from service.tenancy.principal import Actor
from service.tenancy.scope import TenantScope


class PaymentSetupLinkController(Controller):
    path = "/v1/pay/setup"
    tags = ["ways to pay"]
    opt = PUBLIC

    @get(
        "/{token:str}",
        summary="Open a payment-setup link",
        status_code=303,
        security=[],
        responses={
            303: ResponseSpec(
                None,
                description="To the Stripe Checkout page (setup mode) where the merchant saves"
                " a card: `Location` holds it",
            ),
            **responses(404, 409, 410, 429, 503),
        },
    )
    async def open_link(
        self,
        token: FromPath[str],
        payment_pages: NamedDependency[HostedPages | None],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> Redirect:
        """The link a merchant opens in its browser (no API key: the token in the address is
        the credential) to save a way to pay. It answers 303 to a Stripe Checkout page in
        setup mode, in the merchant's currency, made at this moment (or the one it opened
        last, while that is still open). 503 with `Retry-After` while the merchant's Stripe
        customer is still being made; 409 when Stripe is not configured; 410 once the link
        is used or expired (30 days); 429 when the merchant's rate limit is used up (an
        opening counts against it as a request with its key would)."""
        url = await setup.open_link(
            token, pages=payment_pages, now=SYSTEM_CLOCK.now(), admit=rate_limiter.admit
        )
        return Redirect(path=url, status_code=303)


class MerchantPaymentController(Controller):
    path = "/v1/merchants/me"
    tags = ["ways to pay"]

    @post(
        "/payment-setup",
        summary="Get a new payment-setup link",
        status_code=201,
        responses=responses(400, 401, 403, 404),
    )
    async def payment_setup(
        self,
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
        data: JSONBody[PaymentSetupRequest | None] = None,
    ) -> PaymentSetupOut:
        """A fresh link where the merchant saves a way to pay (card), as signup gives one: open
        it in the merchant's browser. Optional `success_url` and `cancel_url` say where Stripe's
        page sends the merchant back to (the configured pages otherwise). The link is shown
        this once; it works for 30 days or until a way to pay is saved through it."""
        return await setup.new_link(
            tenant.require_merchant(),
            data or PaymentSetupRequest(),
            actor=actor,
            now=SYSTEM_CLOCK.now(),
        )

    @post(
        "/billing-portal",
        summary="Open the billing portal",
        status_code=201,
        responses=responses(401, 403, 404, 409, 503),
    )
    async def billing_portal(
        self,
        tenant: NamedDependency[TenantScope],
        payment_pages: NamedDependency[HostedPages | None],
    ) -> BillingPortalOut:
        """A Stripe customer-portal session for the calling merchant: its cards (add, replace,
        remove), its invoices and receipts. The portal sends the merchant back to the configured
        return page. 503 with `Retry-After` while the merchant's Stripe customer is still being
        made; 409 when Stripe is not configured."""
        url = await setup.portal_url(tenant.require_merchant(), pages=payment_pages)
        return BillingPortalOut(url=url)


_PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,-apple-system,"PingFang SC",sans-serif;margin:3rem;
color:#1d2430}}</style></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


def _page(title: str, text: str) -> Response[str]:
    return html_response(_PAGE.format(title=title, text=text))


class PaymentPagesController(Controller):
    """The pages Stripe sends a merchant back to (unless the signup app gives its own)."""

    path = "/pay"
    opt = PUBLIC
    include_in_schema = False

    @get("/setup/complete", media_type=MediaType.HTML)
    async def setup_complete(self) -> Response[str]:
        return _page(
            "Your way to pay is saved",
            "From now on your invoices are charged to it; invoices already sent to you are"
            " paid with it too. You can close this page.",
        )

    @get("/setup/canceled", media_type=MediaType.HTML)
    async def setup_canceled(self) -> Response[str]:
        return _page(
            "No way to pay was saved",
            "Your invoices are sent to you with a link to pay each one. To save a card later,"
            " open your payment link again.",
        )

    @get("/portal/return", media_type=MediaType.HTML)
    async def portal_return(self) -> Response[str]:
        return _page(
            "Back from the billing portal", "Your changes are saved. You can close this page."
        )
