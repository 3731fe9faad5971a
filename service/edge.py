"""The outermost layer of every HTTP request, before routing: its id, its body's deadline, its URL.

It wraps Litestar's router and exception handler (``create_app`` installs it), so what the
router answers itself (404 for no route, 405 for a method a route lacks) carries the request id
like every other answer, and so does what a plain-ASGI layer answers. A request body must have
arrived within ``BILLING_BODY_TIMEOUT_SECONDS`` of the request's start: a client that declares
a body and never sends it gets a 408 problem instead of holding a connection open forever. A
NUL (``%00``) in the path or the query is refused here, once for every route.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import structlog

from service.errors import InvalidInput, RequestTimeout
from service.problems import send_error

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestEdge:
    def __init__(self, app: Any, *, body_timeout_seconds: float) -> None:
        self.app = app
        self.body_timeout_seconds = body_timeout_seconds

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
        remaining = self.deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0)):
                message = await self.receive()
        except TimeoutError:
            raise RequestTimeout(
                "the request body did not arrive in time: send the whole body promptly "
                "(Content-Length must match what you send)"
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.is_body_complete = True
        return message


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
