"""Request and response bodies for the plans API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from plans.catalog import PlanVersion
from plans.compare import BreakEven, Comparison
from plans.periods import Period
from service.subscriptions.schemas import LineOut
from service.wire import Input, Month, Output

Hours = Annotated[
    Decimal, msgspec.Meta(description="Consultation hours, a decimal string such as '12.5'")
]


class PlanOut(Output):
    """A published plan version: its charges, add-ons and SLA policy, exactly as rated."""

    plan: PlanVersion
    fingerprint: str


class PlanVersionsOut(Output):
    code: str
    current: PlanOut
    versions: list[PlanOut]
    """Every published version, oldest first; subscriptions stay on the one they signed."""


class QuoteRequest(Input):
    orders: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 0
    gmv_minor: Annotated[int, msgspec.Meta(ge=0, le=10**15)] = 0
    support_hours: Hours = Decimal(0)
    month: Month | None = None
    """The calendar month to rate (Asia/Shanghai); the current month by default."""
    addons: dict[str, list[str]] = {}
    """Add-ons to include per plan code, e.g. ``{"basic": ["fast_response"]}``."""


class PlanQuoteOut(Output):
    plan_code: str
    plan_version: int
    plan_name: str
    tier: str
    total_minor: int
    currency: str
    lines: list[LineOut]


class QuoteOut(Output):
    currency: str
    period_start: datetime
    period_end: datetime
    quotes: list[PlanQuoteOut]
    """Cheapest first."""
    break_evens: list[BreakEven]

    @classmethod
    def from_comparison(cls, comparison: Comparison, period: Period) -> QuoteOut:
        """The API's answer for a comparison (``POST /v1/plans/quote``, and the object of a
        ``plan.cheaper_available`` event)."""
        return cls(
            currency=comparison.currency,
            period_start=period.start,
            period_end=period.end,
            quotes=[
                PlanQuoteOut(
                    plan_code=q.plan_code,
                    plan_version=q.plan_version,
                    plan_name=q.plan_name,
                    tier=q.tier,
                    total_minor=q.total_minor,
                    currency=comparison.currency,
                    lines=[LineOut.from_line(line) for line in q.draft.lines],
                )
                for q in comparison.quotes
            ],
            break_evens=list(comparison.break_evens),
        )
