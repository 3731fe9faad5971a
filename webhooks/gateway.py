"""The Stripe gateway: the one place that imports ``stripe``.

It builds a ``stripe.StripeClient`` from the settings (``STRIPE_API_BASE`` points every base
address at the local stand-in; ``STRIPE_TIMEOUT_SECONDS`` bounds every request, where the SDK
would wait 80 s), runs the SDK's blocking calls off the event loop, and sorts Stripe's failures
into the two kinds the outbox acts on: worth retrying (network, 429, 5xx) or not (a 4xx the
same request will always get). Stripe's ``Stripe-Should-Retry`` header, when it sends one,
decides over the status code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from service.settings import StripeSettings

T = TypeVar("T")

SignatureVerificationError = stripe.SignatureVerificationError

# The SDK logs every request at INFO; the outbox logs what it sent, once, without payloads.
logging.getLogger("stripe").setLevel(logging.WARNING)


class StripeFailure(Exception):
    """A Stripe call failed; ``is_transient`` says whether the same request may succeed later."""

    def __init__(
        self, message: str, *, is_transient: bool, status: int | None, code: str | None
    ) -> None:
        super().__init__(message)
        self.is_transient = is_transient
        self.status = status
        self.code = code


class CardDeclined(Exception):
    """A payment attempt was declined; Stripe reports it with ``invoice.payment_failed``."""


class Gateway:
    """Stripe calls with explicit idempotency keys, as plain dicts."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: StripeSettings) -> Gateway:
        if not settings.api_key:
            raise RuntimeError("no STRIPE_API_KEY configured")
        # The outbox retries, across worker passes, with backoff: no retries inside a call.
        # A short timeout: a hanging Stripe holds a worker (never a database lock) this long.
        kwargs: dict[str, Any] = {
            "max_network_retries": 0,
            "http_client": stripe.new_default_http_client(timeout=settings.timeout_seconds),
        }
        if settings.api_base:
            base = settings.api_base.rstrip("/")
            kwargs["base_addresses"] = {
                "api": base,
                "files": base,
                "connect": base,
                "meter_events": base,
            }
        return cls(stripe.StripeClient(settings.api_key, **kwargs))

    async def call(self, fn: Callable[..., Any], *args: Any, key: str, **params: Any) -> Any:
        """Run ``fn(*args, params=..., options={"idempotency_key": key})`` in a thread."""

        def run() -> Any:
            options = {"idempotency_key": key}
            if params:
                return fn(*args, params=params, options=options)
            return fn(*args, options=options)

        try:
            return await asyncio.to_thread(run)
        except stripe.CardError as error:
            raise CardDeclined(str(error.user_message or error)) from error
        except stripe.StripeError as error:
            raise stripe_failure(error) from error

    async def retrieve(
        self, fn: Callable[..., Any], object_id: str, *, expand: list[str] | None = None
    ) -> Any:
        """One object. Fields Stripe leaves out unless asked (``Invoice.payments``: see
        ``webhooks/standin/expansion.py``) and ids to turn into objects go in ``expand``."""

        def run() -> Any:
            if expand:
                return fn(object_id, params={"expand": expand})
            return fn(object_id)

        try:
            return await asyncio.to_thread(run)
        except stripe.StripeError as error:
            raise stripe_failure(error) from error

    async def list_all(self, fn: Callable[..., Any], **params: Any) -> list[Any]:
        """Every object of a listing (``fn`` a service's ``list``), all its pages."""

        def run() -> list[Any]:
            return list(fn(params={"limit": 100, **params}).auto_paging_iter())

        try:
            return await asyncio.to_thread(run)
        except stripe.StripeError as error:
            raise stripe_failure(error) from error


class WouldWrite(Exception):
    """A read-only gateway was asked to change something in Stripe."""


class ReadOnlyGateway(Gateway):
    """Reads Stripe, never writes: what resolving a parked outbox row by hand uses, so that it
    only records what exists in Stripe and never makes anything."""

    async def call(self, fn: Callable[..., Any], *args: Any, key: str, **params: Any) -> Any:
        raise WouldWrite(f"{getattr(fn, '__qualname__', fn)}")


def id_of(value: Any) -> str:
    """An expandable field's id, whether Stripe sent the id or the object ("" for none)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value.id)


def metadata_of(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict (empty when it has none)."""
    metadata = getattr(obj, "metadata", None)
    return metadata.to_dict() if metadata is not None else {}


def stripe_failure(error: stripe.StripeError) -> StripeFailure:
    """What a Stripe error means for us: transient (retry later) or not."""
    if isinstance(error, stripe.APIConnectionError):
        return StripeFailure(
            f"network: {error.user_message or error}", is_transient=True, status=None, code=None
        )
    status = error.http_status
    transient = status is None or status == 429 or status >= 500 or status == 409
    if isinstance(error, stripe.IdempotencyError):
        transient = False
    advice = _should_retry(error.headers)
    if advice is not None:  # Stripe knows better than the status code (a lock timeout, ...)
        transient = advice
    return StripeFailure(
        f"{status} {error.code or ''}: {error.user_message or error}".strip(),
        is_transient=transient,
        status=status,
        code=error.code,
    )


def _should_retry(headers: Any) -> bool | None:
    """``Stripe-Should-Retry`` of an error answer: True, False, or None when absent."""
    for name, value in (headers or {}).items():
        if name.lower() == "stripe-should-retry":
            return {"true": True, "false": False}.get(str(value).strip().lower())
    return None


def verify_signature(
    payload: bytes, header: str | None, secret: str, tolerance: int, *, now: float | None = None
) -> None:
    """Raise ``SignatureVerificationError`` unless ``header`` signs ``payload`` and its time is
    within ``tolerance`` seconds of now, either way (the SDK only refuses old signatures: a
    signature dated in the future would stay replayable for as long as it is ahead)."""
    if tolerance <= 0:  # the SDK reads 0 as "no age check"
        raise ValueError("the webhook tolerance must be a positive number of seconds")
    stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
    now = time.time() if now is None else now
    signed_at = _signed_at(header or "")
    if signed_at is None or abs(now - signed_at) > tolerance:
        raise SignatureVerificationError(
            "the signature's timestamp is not within the tolerance of now", header, payload
        )


def _signed_at(header: str) -> int | None:
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    return None
