"""Where the domain gets ``now``: the system clock, or a merchant's test clock.

Domain functions take ``now`` as an argument; only controllers and the worker ask a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that says what it was told: test clocks, and tests."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a clock's time must be timezone-aware")
        self._at = at

    def now(self) -> datetime:
        return self._at


SYSTEM_CLOCK = SystemClock()
