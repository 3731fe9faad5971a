"""``POST /webhooks/stripe``: verify the signature, store the event once, answer 2xx at once.

Processing happens later in the worker (``webhooks.inbox``), so Stripe never waits on our
handlers and a handler failure never makes Stripe resend. A missing, forged, tampered or stale
signature — or one dated further in the future than the tolerance — is a 400 problem and
nothing is stored. A body larger than ``STRIPE_WEBHOOK_MAX_BODY_BYTES`` (1 MiB; Stripe's
events are a few KB) is a 413 before it is read whole. A validly signed event is never refused
for what it holds: the inbox keeps what it cannot process, parked.

The answer is decided once, by `accept`, whichever layer serves the request: the route's own
middleware, `WebhookHotPath` (a `service.hot_path.HotPath`), serves it as plain ASGI, skipping
Litestar's per-request machinery, which cost about as much as verifying and storing the event;
a body whose length is not a number or is over the limit goes to the Litestar handler beneath,
which stays the route's documented handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK
from litestar.types import Scope

from service.errors import BillingError, PayloadTooLarge
from service.hot_path import HotPath, header
from service.problems import PROBLEM_MEDIA_TYPE, Problem
from service.settings import Settings
from service.tenancy.auth import PUBLIC
from webhooks import inbox
from webhooks.gateway import SignatureVerificationError, verify_signature

log = structlog.get_logger(__name__)


class BadWebhook(BillingError):
    slug = "bad-webhook"
    status = 400
    title = "Webhook refused"


async def accept(
    settings: Settings, signature: str | None, read_body: Callable[[int], Awaitable[bytes]]
) -> dict[str, Any]:
    """The answer to one delivery: the secret, the body (``read_body(limit)``, a 413 past the
    limit), the signature, the event stored once. A `BillingError` is its 400 or 413."""
    secret = settings.stripe.webhook_secret
    if not secret:
        raise BadWebhook("no STRIPE_WEBHOOK_SECRET is configured; events cannot be verified")
    payload = await read_body(settings.limits.webhook_max_body_bytes)
    try:
        verify_signature(payload, signature, secret, settings.stripe.webhook_tolerance_seconds)
    except SignatureVerificationError:
        log.warning("stripe_webhook_refused", reason="signature")
        raise BadWebhook("the Stripe-Signature header does not verify") from None
    event_id, is_new = await inbox.store(payload)
    if not is_new:
        log.info("webhook_duplicate", event_id=event_id)
    return {"received": True, "event_id": event_id, "duplicate": not is_new}


class WebhookHotPath(HotPath):
    """Route middleware of ``POST /webhooks/stripe`` (see the module's docstring)."""

    def body_limit(self, litestar_app: Any) -> int | None:
        # Past the webhook's limit (or the app's, if lower) the handler answers the 413.
        limit: int = litestar_app.state.settings.limits.webhook_max_body_bytes
        app_limit: int | None = litestar_app.request_max_body_size
        return limit if app_limit is None else min(limit, app_limit)

    async def answer(self, scope: Scope, body: bytes) -> tuple[int, bytes] | None:
        async def read_body(_: int) -> bytes:
            return body  # already read, within the limit

        answer = await accept(
            scope["litestar_app"].state.settings,
            header(scope, b"stripe-signature"),
            read_body,
        )
        return HTTP_200_OK, msgspec.json.encode(answer)


class StripeWebhookController(Controller):
    path = "/webhooks/stripe"
    tags = ["stripe"]
    opt = PUBLIC

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Receive a Stripe webhook event",
        description="Signed with the endpoint secret (`Stripe-Signature`); stored once per "
        "event id and processed by the worker.",
        security=[],
        middleware=[WebhookHotPath],
        responses={
            400: ResponseSpec(
                Problem, description="Bad or stale signature", media_type=PROBLEM_MEDIA_TYPE
            ),
            413: ResponseSpec(
                Problem, description="Body larger than the limit", media_type=PROBLEM_MEDIA_TYPE
            ),
        },
    )
    async def receive(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> dict[str, Any]:
        return await accept(
            settings,
            request.headers.get("stripe-signature"),
            lambda limit: _read_capped(request, limit),
        )


async def _read_capped(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, or a 413 as soon as it is known to pass ``limit`` (declared or received)."""
    too_large = PayloadTooLarge(
        f"a Stripe webhook body is at most {limit:,} bytes here (Stripe's events are far "
        "smaller): this one is larger and was not read",
        limit=limit,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
