"""``POST /v1/usage/events``, the order pipeline's hottest request, kept lean.

The answer to one event is decided once, by `record`, whichever layer serves the request. The
route's own middleware, `SingleEventHotPath` (a `service.hot_path.HotPath`), serves it as plain
ASGI: it decodes the body with exactly the conversion Litestar applies to a handler's ``data``,
records the event and sends the answer, skipping the framework's per-request machinery, which
on this request cost more than the event's own work. A body it cannot decode, or one over the
size limit, goes to the Litestar handler beneath it, which answers the 400 or 413 exactly as
for any other route.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar.types import Scope

from service import wire
from service.errors import BillingError, Conflict, InvalidInput
from service.hot_path import HotPath, header
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


class SingleEventHotPath(HotPath):
    """Route middleware of ``POST /v1/usage/events`` (see the module's docstring)."""

    async def answer(self, scope: Scope, body: bytes) -> tuple[int, bytes] | None:
        settings = scope["litestar_app"].state.settings
        try:
            decoded = wire.decode_body(
                body,
                content_type=header(scope, b"content-type"),
                max_depth=settings.limits.json_max_depth,
            )
            event = msgspec.convert(decoded, UsageEventIn, strict=False, str_keys=True)
        except (BillingError, msgspec.ValidationError):
            return None  # the handler answers as for any body
        answer = await record(
            TenantScope(scope["user"]).require_merchant(),
            event,
            future_skew_seconds=settings.usage_future_skew_seconds,
        )
        return status_of(answer), msgspec.json.encode(answer)
