"""Request and response bodies of the metered billing API.

The structure of a request is checked by msgspec (a malformed body is a 400 naming the path).
Values are checked per event by ``service.usage.ingest``, so one bad event in a batch does not
sink the others: that is why ``metric`` is a plain string and ``quantity`` an unconstrained
decimal here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from service.subscriptions.schemas import PreviewInvoiceOut
from service.wire import Input, Output, PerEventInput

MAX_BATCH = 10_000

TRANSACTION_ID_DOC = (
    "The order's own id in your system, 1-200 characters (no '/' or control characters). "
    "It MUST be the same on every retry of the same order: the service counts each "
    "transaction_id once per merchant, however often and however concurrently it arrives. "
    "A client that makes a new id per retry bills the merchant twice."
)


class GmvIn(PerEventInput):
    amount_minor: Annotated[
        int, msgspec.Meta(description="GMV of the order in minor units (fen for CNY).")
    ]
    currency: Annotated[
        str,
        msgspec.Meta(
            description="ISO 4217; must be the subscription's currency.", examples=["CNY"]
        ),
    ]


class UsageEventIn(PerEventInput):
    transaction_id: Annotated[str, msgspec.Meta(description=TRANSACTION_ID_DOC)]
    metric: Annotated[
        str,
        msgspec.Meta(description="`orders` or `support_hours`.", examples=["orders"]),
    ]
    occurred_at: Annotated[
        datetime,
        msgspec.Meta(
            description=(
                "When the usage happened, with a timezone offset. It decides the billing "
                "period the event counts in; not before the subscription started, not in the "
                "future beyond a few minutes."
            ),
            examples=["2026-11-23T10:15:00+08:00"],
        ),
    ]
    quantity: Annotated[
        int | Decimal,
        msgspec.Meta(
            description=(
                "Handled orders (a whole number, usually 1) or support hours (a decimal "
                'string such as "1.5"). Positive.'
            ),
            examples=["1"],
        ),
    ]
    gmv: Annotated[GmvIn | None, msgspec.Meta(description="Orders only: the orders' GMV.")] = None
    properties: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="Anything you want kept with the event (stored, not rated)."),
    ] = None


class UsageBatchIn(Input):
    events: Annotated[list[UsageEventIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


EventStatus = Literal["accepted", "duplicate", "conflict", "rejected"]


class EventResultOut(Output, omit_defaults=True):
    """What became of one event of a batch."""

    index: int
    """Position of the event in the batch."""
    transaction_id: str
    status: EventStatus
    reason: str | None = None
    """Rejected or conflict: a stable code such as ``occurred_in_future``."""
    field: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        """Nothing to write another way (no decimal, instant or free-form field), and a batch
        makes 10,000 of these: `Output`'s per-field pass is skipped."""


class BatchOut(Output):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[EventResultOut]


class EventOut(Output, omit_defaults=True):
    transaction_id: str
    status: Literal["accepted", "duplicate"]
    subscription_id: UUID | None = None
    period_start: datetime | None = None
    """Accepted: the start of the subscription period the event counts in."""


class VoidOut(Output):
    transaction_id: str
    voided_at: datetime
    was_already_voided: bool
    """True when an earlier request voided it: nothing was subtracted this time."""


class MetricUsageOut(Output):
    metric: str
    count: int
    """Events counted (voided ones are not)."""
    quantity: Decimal
    gmv_minor: int


class UsagePeriodOut(Output):
    subscription_id: UUID
    period_start: datetime
    period_end: datetime


class UsageSummaryOut(Output):
    period: str
    """``current`` or the ``YYYY-MM`` asked for."""
    currency: str
    periods: list[UsagePeriodOut]
    """The subscription periods summed: the one open now, or those starting in the month."""
    metrics: list[MetricUsageOut]

    @classmethod
    def from_summary(cls, summary: Any) -> UsageSummaryOut:
        """From a ``service.usage.summary.Summary`` (the API's answer and the events' object)."""
        return cls(
            period=summary.period,
            currency=summary.currency,
            periods=[
                UsagePeriodOut(
                    subscription_id=chosen.subscription_id,
                    period_start=chosen.start,
                    period_end=chosen.end,
                )
                for chosen in summary.periods
            ],
            metrics=[
                MetricUsageOut(
                    metric=metric,
                    count=total.count,
                    quantity=total.quantity,
                    gmv_minor=total.gmv_minor,
                )
                for metric, total in summary.totals.items()
            ],
        )


class UpcomingInvoiceOut(PreviewInvoiceOut):
    """The next invoice the close will make (its fields here), then all of them in order."""

    timezone: str
    """The subscription's zone: its periods are calendar months (or anniversaries) there."""
    invoices: list[PreviewInvoiceOut]
    """Every invoice the close will make, in order, up to and including the one of the period
    open now; the first is the one described above."""
