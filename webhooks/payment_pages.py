"""Stripe's hosted pages for a merchant, made through the SDK: a Checkout Session in setup mode
(where a card is saved) and a customer-portal session.

Called from an API request, synchronously, with no database transaction open. The portal needs
a saved configuration: the account's default when someone saved the portal settings in the
Stripe dashboard, else ours, made through the API at first use (tagged ``kefu_portal`` in its
metadata, found again by that tag; made with a fixed idempotency key, so two processes making
it at once make one).
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from service.errors import UpstreamUnavailable
from service.payments.setup import CheckoutPage, StripeRefused
from webhooks import records
from webhooks.gateway import Gateway, StripeFailure, metadata_of

PORTAL_CONFIGURATION = "v1"
"""Our portal configuration's version (``metadata.kefu_portal``): a new one is made when the
features below change."""

PORTAL_FEATURES: dict[str, Any] = {
    "payment_method_update": {"enabled": True},
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": True, "allowed_updates": ["email", "address"]},
}


class StripeHostedPages:
    """``service.payments.setup.HostedPages`` on the official SDK."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._portal_configuration: str | None = None

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
    ) -> CheckoutPage:
        tags = {"kefu_merchant_id": str(merchant_id), "kefu_setup_link_id": str(link_id)}
        session = await self._call(
            self.gateway.client.v1.checkout.sessions.create,
            key=key,
            mode="setup",
            customer=customer_id,
            currency=currency.lower(),
            success_url=success_url,
            cancel_url=cancel_url,
            metadata=tags,
            setup_intent_data={"metadata": tags},
        )
        return CheckoutPage(
            id=str(session.id), url=str(session.url), expires_at=records.at(session.expires_at)
        )

    async def portal_session(self, *, customer_id: str, return_url: str) -> str:
        configuration = await self._configuration(return_url)
        session = await self._call(
            self.gateway.client.v1.billing_portal.sessions.create,
            key=f"kefu-portal-{uuid.uuid4()}",  # each request is a new session
            customer=customer_id,
            configuration=configuration,
            return_url=return_url,
        )
        return str(session.url)

    async def _configuration(self, return_url: str) -> str:
        if self._portal_configuration is not None:
            return self._portal_configuration
        v1 = self.gateway.client.v1
        try:
            found = await self.gateway.list_all(v1.billing_portal.configurations.list, active=True)
        except StripeFailure as failure:
            raise _refusal(failure) from failure
        chosen = next((c for c in found if c.is_default), None) or next(
            (c for c in found if metadata_of(c).get("kefu_portal") == PORTAL_CONFIGURATION), None
        )
        if chosen is None:
            chosen = await self._call(
                v1.billing_portal.configurations.create,
                key=f"kefu-portal-configuration-{PORTAL_CONFIGURATION}",
                business_profile={"headline": "Your way to pay, invoices and receipts"},
                features=PORTAL_FEATURES,
                default_return_url=return_url,
                metadata={"kefu_portal": PORTAL_CONFIGURATION},
            )
        self._portal_configuration = str(chosen.id)
        return self._portal_configuration

    async def _call(self, fn: Any, *, key: str, **params: Any) -> Any:
        try:
            return await self.gateway.call(fn, key=key, **params)
        except StripeFailure as failure:
            raise _refusal(failure) from failure


def _refusal(failure: StripeFailure) -> Exception:
    if failure.is_transient:
        return UpstreamUnavailable(
            f"Stripe did not answer ({failure}): try again in half a minute",
            retry_after=30,
        )
    return StripeRefused(
        f"Stripe refused to open the page: {failure}. If the merchant's Stripe customer was"
        " deleted in the dashboard, the next push makes a new one: try again in a minute"
    )
