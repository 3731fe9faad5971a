"""Request and response bodies for webhook endpoints and the events sent to them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from service.db.tables import WebhookEndpoint
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.wire import Input, Output

EventTypeName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(\*|[a-z_]{1,30}\.[a-z_]{1,30})$",
        examples=["invoice.paid"],
        description="An event type (see the catalog in the README), or `*` for every type",
    ),
]


class EndpointCreate(Input):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    """Where deliveries are POSTed: https (http outside production), a public address."""
    events: Annotated[list[EventTypeName], msgspec.Meta(min_length=1, max_length=32)]
    """The event types to send there; ``["*"]`` for all of them."""
    merchant_id: UUID | None = None
    """Operators: only this merchant's events (omit for every merchant's). A merchant's own
    endpoint always hears its own events only."""
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""


class EndpointOut(Output):
    id: UUID
    url: str
    description: str
    events: list[str]
    merchant_id: UUID | None
    """Whose events it hears; null: every merchant's (an operator's endpoint)."""
    registered_by: str
    """``operator`` or ``merchant``."""
    status: str
    """``enabled``, or ``disabled`` after too many consecutive failed deliveries."""
    consecutive_failures: int
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    deleted_at: datetime | None

    @classmethod
    def from_row(cls, row: WebhookEndpoint) -> EndpointOut:
        is_platform = row.merchant_id == PLATFORM_MERCHANT_ID
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            events=list(row.event_types),
            merchant_id=row.for_merchant_id if is_platform else row.merchant_id,
            registered_by="operator" if is_platform else "merchant",
            status="disabled" if row.disabled_at is not None else "enabled",
            consecutive_failures=row.consecutive_failures,
            disabled_at=row.disabled_at,
            disabled_reason=row.disabled_reason,
            created_at=row.created_at,
            deleted_at=row.deleted_at,
        )


class EndpointCreatedOut(EndpointOut):
    secret: str
    """The signing secret (``whsec_...``), shown this once and never again: store it now.
    Every delivery carries ``Kefu-Signature: t=...,v1=...`` made with it."""


class AttemptOut(Output):
    attempt: int
    attempted_at: datetime
    outcome: str
    """``delivered`` (a 2xx), ``failed`` (another answer, or none) or ``refused`` (the address
    rule: nothing was sent)."""
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_excerpt: str | None
    """The first few hundred bytes of the answer's body, nothing more is kept."""


class DeliveryOut(Output):
    id: UUID
    endpoint_id: UUID
    status: str
    """``pending``, ``in_flight``, ``delivered``, ``failed`` (given up after the retry window)
    or ``canceled`` (its endpoint was deleted)."""
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    is_replay: bool
    created_at: datetime
    log: list[AttemptOut] | None = None
    """Every attempt, oldest first (one event's page only)."""


class EventOut(Output):
    id: UUID
    type: str
    merchant_id: UUID
    created: datetime
    api_version: str
    deliveries: list[DeliveryOut]
    body: dict[str, Any] | None = None
    """The event exactly as sent (one event's page only)."""
