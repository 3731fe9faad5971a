"""The metrics the order pipeline may report, and what a sane value of each looks like."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from plans.charges import METRICS


@dataclass(frozen=True, slots=True)
class MetricRule:
    name: str
    is_whole: bool
    """Quantities are whole numbers (handled orders)."""
    has_gmv: bool
    """Events may carry the GMV of what they count."""
    max_quantity: Decimal
    """More than this in one event is a client bug, not usage."""
    max_decimal_places: int


MAX_GMV_MINOR: Final = 10**12
"""GMV of one event above ¥10 billion (in fen) is a client bug; also keeps period sums in BIGINT."""

RULES: Final[dict[str, MetricRule]] = {
    "orders": MetricRule(
        name="orders",
        is_whole=True,
        has_gmv=True,
        max_quantity=Decimal(1_000_000),
        max_decimal_places=0,
    ),
    "support_hours": MetricRule(
        name="support_hours",
        is_whole=False,
        has_gmv=False,
        max_quantity=Decimal(744),  # every hour of a 31-day month
        max_decimal_places=4,
    ),
}

assert set(RULES) == set(METRICS), "every metric plans/ rates has a rule here, and no other"

KNOWN: Final = tuple(RULES)
