"""The outermost layer of every HTTP request, before routing: its id, its body's deadline, its URL,
and whether the process takes it on at all.

It wraps Litestar's router and exception handler (``create_app`` installs it), so what the
router answers itself (404 for no route, 405 for a method a route lacks) carries the request id
like every other answer, and so does what a plain-ASGI layer answers. A request body must have
arrived within ``BILLING_BODY_TIMEOUT_SECONDS`` of the request's start: a client that declares
a body and never sends it gets a 408 problem instead of holding a connection open forever. A
NUL (``%00``) in the path or the query is refused here, once for every route.

**Overload.** A process answers at most ``BILLING_MAX_IN_FLIGHT`` requests at once. One more is
refused here, before its body is read or anything else is done, with a 503 problem and
``Retry-After``: with far more clients than the process can serve, the excess is told at once to
come back (a retry elsewhere, or a moment later) instead of waiting in a queue until it times
out, and memory stays bounded by the cap rather than by the number of clients. Liveness,
readiness and metrics are never refused (a probe must see the process as it is).
"""

from __future__ import annotations

import asyncio
import os
import re
import types
from collections.abc import Generator
from typing import Any, Final

import structlog
from prometheus_client import Counter, Gauge

from service.errors import InvalidInput, Overloaded, RequestTimeout
from service.problems import send_error

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

NEVER_REFUSED: Final = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths answered however busy the process is (probes and scrapes)."""

IN_FLIGHT: Final = Gauge(
    "billing_requests_in_flight", "Requests this process is answering now (the capped ones)"
)
IN_FLIGHT_PEAK: Final = Gauge(
    "billing_requests_in_flight_peak",
    "The most requests this process has answered at once since it started (never above"
    " BILLING_MAX_IN_FLIGHT)",
)
REFUSED: Final = Counter(
    "billing_requests_refused_overloaded",
    "Requests refused with a 503 because BILLING_MAX_IN_FLIGHT were in flight",
)


class RequestEdge:
    def __init__(self, app: Any, *, body_timeout_seconds: float, max_in_flight: int) -> None:
        self.app = app
        self.body_timeout_seconds = body_timeout_seconds
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        is_capped = scope["path"] not in NEVER_REFUSED
        if is_capped:
            if self.in_flight >= self.max_in_flight:
                REFUSED.inc()
                await send_error(
                    scope,
                    send_with_id,
                    Overloaded(
                        f"this server is answering as many requests as it takes at once"
                        f" ({self.max_in_flight}): send the request again after Retry-After"
                        " seconds; nothing was done",
                        retry_after=Overloaded.retry_after_seconds,
                    ),
                    headers=[(b"connection", b"close")],
                )
                structlog.contextvars.clear_contextvars()
                return
            self.in_flight += 1
            IN_FLIGHT.set(self.in_flight)
            if self.in_flight > self.peak:
                self.peak = self.in_flight
                IN_FLIGHT_PEAK.set(self.peak)
        try:
            if _has_nul(scope):
                await send_error(
                    scope,
                    send_with_id,
                    InvalidInput(
                        "the address holds a NUL character (%00), which no path or query "
                        "value may hold: remove it",
                        field="path" if b"%00" in scope.get("raw_path", b"") else "query",
                    ),
                )
                return
            await self.app(scope, _BodyDeadline(receive, self.body_timeout_seconds), send_with_id)
        finally:
            if is_capped:
                self.in_flight -= 1
                IN_FLIGHT.set(self.in_flight)
            structlog.contextvars.clear_contextvars()


class _BodyDeadline:
    """``receive`` with a deadline until the body is complete; after it (waiting for a
    disconnect while a download streams), ``receive`` is passed through untouched."""

    __slots__ = ("deadline", "is_body_complete", "receive")

    def __init__(self, receive: Any, seconds: float) -> None:
        self.receive = receive
        self.deadline = asyncio.get_running_loop().time() + seconds
        self.is_body_complete = False

    async def __call__(self) -> Any:
        if self.is_body_complete:
            return await self.receive()
        # A message the server already holds (a small body arrives with its headers) comes back
        # at the first step, without waiting: it needs no timer. Arming one cost 8 µs of a
        # single event's CPU (a timer handle in the loop's heap, pushed, cancelled, popped).
        steps = self.receive().__await__()
        try:
            waiting_on = steps.send(None)
        except StopIteration as done:
            message = done.value
        else:
            remaining = self.deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    message = await _resumed(steps, waiting_on)
            except TimeoutError:
                raise RequestTimeout(
                    "the request body did not arrive in time: send the whole body promptly "
                    "(Content-Length must match what you send)"
                ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.is_body_complete = True
        return message


@types.coroutine
def _resumed(steps: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
    """The rest of an awaitable whose first step (``steps.send(None)``) handed ``waiting_on``
    to the event loop: what its ``await`` would have done from there, cancellation included."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as error:  # the deadline's cancellation reaches the receive
            try:
                waiting_on = steps.throw(error)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = steps.send(sent)
            except StopIteration as done:
                return done.value


def _has_nul(scope: dict[str, Any]) -> bool:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    return b"%00" in raw_path or b"\x00" in raw_path or b"%00" in query or b"\x00" in query


def _incoming_request_id(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None
