"""Per-request observation: a request id, one log line and the request metrics, in one wrapper.

A plain ASGI middleware, so the hot path pays for one contextvar bind, one wrapped ``send``, one
log line and three metric updates, and for no request/response introspection. (Litestar's own
Prometheus middleware builds a Request and looks metrics up by label four times a request,
which cost as much as the rest of a single-event request.) Bodies and headers are never logged.
"""

from __future__ import annotations

import time
from typing import Any, Final

import structlog
from prometheus_client import Counter, Gauge, Histogram

log = structlog.get_logger("service.request")

REQUESTS: Final = Counter(
    "billing_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "path", "status_code"],
)
DURATION: Final = Histogram(
    "billing_request_duration_seconds",
    "Time from a request's arrival to its answer's end, by method and route template",
    ["method", "path"],
)
IN_PROGRESS: Final = Gauge(
    "billing_requests_in_progress",
    "HTTP requests being answered now, by method and route template",
    ["method", "path"],
)


class _Series:
    """Labelled metric children, looked up once per (method, route, status) and kept: the
    label lookup costs more than the update."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], Any] = {}
        self.routes: dict[tuple[str, str], tuple[Any, Any]] = {}

    def route(self, method: str, path: str) -> tuple[Any, Any]:
        key = (method, path)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = (
                DURATION.labels(method, path),
                IN_PROGRESS.labels(method, path),
            )
        return found

    def count(self, method: str, path: str, status: int) -> None:
        key = (method, path, status)
        counter = self.counts.get(key)
        if counter is None:
            counter = self.counts[key] = REQUESTS.labels(method, path, str(status))
        counter.inc()


_series = _Series()


class RequestContextMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request id is chosen and bound outside the router (``service.edge``).
        method: str = scope["method"]
        # The route's template (``/v1/invoices/{invoice_id:uuid}``) keeps the label set bounded.
        route: str = scope.get("path_template") or scope["path"]
        duration, in_progress = _series.route(method, route)
        in_progress.inc()
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception as exc:
            # The app-level handler outside us answers; record the status it will send.
            status = getattr(exc, "status", None) or getattr(exc, "status_code", 500)
            raise
        finally:
            seconds = time.perf_counter() - started
            in_progress.dec()
            duration.observe(seconds)
            _series.count(method, route, status)
            log.info(
                "request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
