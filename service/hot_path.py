"""Route middleware that serves a hot route as plain ASGI, with its Litestar handler beneath.

On the busiest requests (a single usage event, a Stripe webhook) Litestar's per-request
machinery (signature model, dependency resolution, response object) cost more than the
request's own work. A `HotPath` on such a route reads the body itself, lets the route decide
the answer with the same function its Litestar handler calls, and sends it as plain ASGI. What
it does not serve goes to the handler beneath, which answers exactly as for any other route: a
body whose length is not a number or is over the limit (400, 413), and whatever the route's
`answer` hands back (a body it cannot decode). Authentication, the request id, the body's
deadline, the request log line and metrics wrap both layers, as for every route.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BillingError
from service.problems import send_error, send_internal_error, send_json


class HotPath(ABC):
    """Serves what `answer` answers; hands the rest to the Litestar handler beneath."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def body_limit(self, litestar_app: Any) -> int | None:
        """The most bytes of body served here (more goes to the handler, which answers 413)."""
        limit: int | None = litestar_app.request_max_body_size
        return limit

    @abstractmethod
    async def answer(self, scope: Scope, body: bytes) -> tuple[int, bytes] | None:
        """The answer's status and JSON body, None to hand the request to the handler, or a
        `BillingError` answered as the app's exception handler would."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.body_limit(scope["litestar_app"])
        declared = declared_length(scope)
        if declared is None or (limit is not None and declared > limit):
            await self.app(scope, receive, send)  # the handler answers the 400 or 413
            return
        body = await _read_body(receive, limit)
        if body is None:
            return  # the client went away before its body ended: nothing done, no answer
        if limit is not None and len(body) > limit:
            await self.app(scope, _replay(body), send)  # the handler answers the 413
            return
        try:
            answer = await self.answer(scope, body)
        except BillingError as error:
            await send_error(scope, send, error)
            return
        except Exception as error:
            # Litestar answers a handler's unexpected error beneath the route's middleware, with
            # the request's id still bound; above it, it would not be. Answer it here the same way.
            await send_internal_error(scope, send, error)
            return
        if answer is None:
            await self.app(scope, _replay(body), send)  # the handler answers as for any body
            return
        status, document = answer
        await send_json(send, status, document)


def header(scope: Scope, wanted: bytes) -> str | None:
    """The first value of the request header ``wanted`` (lower case), if sent."""
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return None


def declared_length(scope: Scope) -> int | None:
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
