"""Opening Stripe's pages for a merchant: the Checkout page where it saves a way to pay (behind a
payment-setup link of ours) and the customer portal where it manages it.

Both are made synchronously, through ``HostedPages`` (Stripe's SDK lives in ``webhooks``),
with no database transaction open while Stripe answers. They need the merchant's Stripe
customer: until the outbox has made it (a few seconds after signup), the answer is a 503 with
``Retry-After``; without a Stripe key there is nothing to open (409).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import msgspec

from service.audit import log as audit
from service.db.engine import current as current_database
from service.errors import BillingError, Conflict, Unavailable
from service.payments import links
from service.payments.schemas import PaymentSetupOut, PaymentSetupRequest
from service.tenancy import merchants
from service.tenancy.principal import Actor

CUSTOMER_PENDING_RETRY_SECONDS = 5


class PaymentsNotConfigured(Conflict):
    slug = "payments-not-configured"
    title = "Payments are not configured"


class CustomerNotReady(Unavailable):
    slug = "payment-account-pending"
    title = "The merchant's payment account is being set up"


class StripeRefused(BillingError):
    """Stripe refused to open the page (a request it will always refuse)."""

    slug = "stripe-refused"
    status = 409
    title = "Stripe refused the request"


@dataclass(frozen=True, slots=True)
class CheckoutPage:
    id: str
    url: str
    expires_at: datetime


@runtime_checkable
class HostedPages(Protocol):
    """Stripe's hosted pages, opened for one customer (``webhooks.payment_pages``)."""

    async def setup_session(
        self,
        *,
        customer_id: str,
        currency: str,
        success_url: str,
        cancel_url: str,
        merchant_id: UUID,
        link_id: UUID,
        key: str,
    ) -> CheckoutPage: ...

    async def portal_session(self, *, customer_id: str, return_url: str) -> str: ...


NOT_CONFIGURED = (
    "no Stripe account is configured (STRIPE_API_KEY), so there is no page to save a way to pay"
    " on: invoices are kept, and pushed once an operator configures Stripe"
)


async def _customer_of(merchant_id: UUID) -> tuple[str, str]:
    merchant = await merchants.get(merchant_id)
    if not merchant.stripe_customer_id:
        raise CustomerNotReady(
            "the merchant's account at our payment provider is being made (it takes a few"
            f" seconds after signup): try again in {CUSTOMER_PENDING_RETRY_SECONDS} seconds",
            retry_after=CUSTOMER_PENDING_RETRY_SECONDS,
        )
    return merchant.stripe_customer_id, merchant.currency


async def open_link(
    token: str,
    *,
    pages: HostedPages | None,
    now: datetime,
    admit: Callable[[UUID], Awaitable[None]] | None = None,
) -> str:
    """Where a payment-setup link goes now: its open Checkout page, or a new one. ``admit``
    counts the opening against the link's merchant (its rate limit) before anything else."""
    link = await links.find(token, now=now)
    if admit is not None:
        await admit(link.merchant_id)
    if pages is None:
        raise PaymentsNotConfigured(NOT_CONFIGURED)
    still_open = links.open_session_url(link, now=now)
    if still_open is not None:
        return still_open
    customer_id, currency = await _customer_of(link.merchant_id)
    number = link.sessions_made + 1
    page = await pages.setup_session(
        customer_id=customer_id,
        currency=currency,
        success_url=link.success_url,
        cancel_url=link.cancel_url,
        merchant_id=link.merchant_id,
        link_id=link.id,
        key=f"kefu-payment-setup-{link.id}:{number}",
    )
    await links.record_session(
        link, number=number, session_id=page.id, url=page.url, expires_at=page.expires_at
    )
    return page.url


async def new_link(
    merchant_id: UUID, data: PaymentSetupRequest, *, actor: Actor, now: datetime
) -> PaymentSetupOut:
    """A fresh payment-setup link for the merchant (audited; the token is not)."""
    await merchants.get(merchant_id)
    async with current_database().engine.transaction():
        issued = await links.issue(
            merchant_id, now=now, success_url=data.success_url, cancel_url=data.cancel_url
        )
        await audit.record(
            actor,
            merchant_id=merchant_id,
            entity="payment_setup_link",
            entity_id=issued.id,
            action="created",
            changes={"expires_at": issued.expires_at.isoformat(), **msgspec.to_builtins(data)},
        )
    return PaymentSetupOut(url=issued.url, expires_at=issued.expires_at)


async def portal_url(merchant_id: UUID, *, pages: HostedPages | None) -> str:
    """A customer-portal session for the merchant (cards, invoices, receipts)."""
    if pages is None:
        raise PaymentsNotConfigured(NOT_CONFIGURED)
    customer_id, _ = await _customer_of(merchant_id)
    return await pages.portal_session(
        customer_id=customer_id, return_url=links.settings().portal_return_url
    )
