"""``POST /v1/usage/events``, the order pipeline's hottest request, kept lean.

The answer to one event is decided once, by `record`, whichever layer serves the request. The
route's own middleware, `SingleEventHotPath`, serves it as plain ASGI: it decodes the body with
exactly the conversion Litestar applies to a handler's ``data``, records the event and sends the
answer, skipping the framework's per-request machinery (signature model, dependency resolution,
response object), which on this request cost more than the event's own work. A body it cannot
decode, or one over the size limit, goes to the Litestar handler beneath it, which answers the
400 or 413 exactly as for any other route. Authentication, the request log line and metrics
wrap both, as for every route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service import wire
from service.errors import BillingError, Conflict, InvalidInput
from service.problems import send_error, send_internal_error, send_json
from service.tenancy.scope import TenantScope
from service.usage import ingest
from service.usage.schemas import EventOut, UsageEventIn


async def record(merchant_id: UUID, event: UsageEventIn, *, future_skew_seconds: int) -> EventOut:
    """Record one event: its answer (status ``accepted`` → 201, ``duplicate`` → 200), or a
    `BillingError` for a rejected (422) or conflicting (409) event."""
    outcome, placed = await ingest.record_one(
        merchant_id, event, future_skew_seconds=future_skew_seconds
    )
    if outcome.status == "rejected":
        raise InvalidInput(
            outcome.detail or "usage event rejected", field=outcome.field, reason=outcome.reason
        )
    if outcome.status == "conflict":
        raise Conflict(
            outcome.detail or "transaction_id reused", field=outcome.field, reason=outcome.reason
        )
    if outcome.status == "duplicate":
        return EventOut(transaction_id=event.transaction_id, status="duplicate")
    return EventOut(
        transaction_id=event.transaction_id,
        status="accepted",
        subscription_id=placed.subscription_id if placed else None,
        period_start=placed.start if placed else None,
    )


def status_of(answer: EventOut) -> int:
    return 201 if answer.status == "accepted" else 200


class SingleEventHotPath:
    """Route middleware of ``POST /v1/usage/events`` (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        litestar_app: Any = scope["litestar_app"]
        limit: int | None = litestar_app.request_max_body_size
        declared = _declared_length(scope)
        if declared is None or (limit is not None and declared > limit):
            await self.app(scope, receive, send)  # the handler answers the 400 or 413
            return
        body = await _read_body(receive, limit)
        if body is None:
            return  # the client went away before its body ended: nothing recorded, no answer
        if limit is not None and len(body) > limit:
            await self.app(scope, _replay(body), send)  # the handler answers the 413
            return
        try:
            decoded = wire.decode_body(
                body,
                content_type=_header(scope, b"content-type"),
                max_depth=litestar_app.state.settings.limits.json_max_depth,
            )
            event = msgspec.convert(decoded, UsageEventIn, strict=False, str_keys=True)
        except (BillingError, msgspec.ValidationError):
            await self.app(scope, _replay(body), send)  # the handler answers as for any body
            return
        try:
            answer = await record(
                TenantScope(scope["user"]).require_merchant(),
                event,
                future_skew_seconds=litestar_app.state.settings.usage_future_skew_seconds,
            )
        except BillingError as error:
            await send_error(scope, send, error)
            return
        except Exception as error:
            # Litestar answers a handler's unexpected error beneath the route's middleware, with
            # the request's id still bound; above it, it would not be. Answer it here the same way.
            await send_internal_error(scope, send, error)
            return
        await send_json(send, status_of(answer), msgspec.json.encode(answer))


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return None


def _declared_length(scope: Scope) -> int | None:
    """The declared Content-Length (0 when none); None when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return 0


async def _read_body(receive: Receive, limit: int | None) -> bytes | None:
    """The whole body, or its first chunks once they pass ``limit``; None if the client went
    away before the body ended."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False) or (limit is not None and size > limit):
            return b"".join(chunks)


def _replay(body: bytes) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that hands the already-read body to the handler beneath."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
