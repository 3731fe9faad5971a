"""Billing periods: calendar months and anniversary months in a merchant's timezone.

Pure arithmetic on the instants it is given (zone rules from the standard library's
``zoneinfo``); it never reads the clock. A `Period` is half-open, ``[start, end)``, and its
datetimes carry the merchant's zone. Lengths are measured in real elapsed time (through UTC),
so a Berlin March is one hour shorter than 31 days.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "BillingPeriodKind",
    "Period",
    "anniversary_period_containing",
    "calendar_period_containing",
    "elapsed",
    "next_anniversary_period",
    "next_calendar_period",
    "next_period",
    "period_containing",
    "zone",
]

BillingPeriodKind = Literal["calendar_month", "anniversary"]

_MICROSECOND = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)


def zone(tz_name: str) -> ZoneInfo:
    """The IANA zone for a name such as 'Asia/Shanghai'; a clear error for a bad name."""
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {tz_name!r}: expected an IANA name") from None


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def elapsed(start: datetime, end: datetime) -> timedelta:
    """Real time between two aware instants.

    Subtracting two datetimes that share a tzinfo object compares wall clocks, which is wrong
    across a DST change; going through UTC is not.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    return end.astimezone(UTC) - start.astimezone(UTC)


class Period(msgspec.Struct, frozen=True):
    """A half-open billing period ``[start, end)`` of two timezone-aware instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "period start")
        _require_aware(self.end, "period end")
        if elapsed(self.start, self.end) <= timedelta(0):
            start, end = self.start.isoformat(), self.end.isoformat()
            raise ValueError(f"period end {end} must be after its start {start}")

    @property
    def duration(self) -> timedelta:
        return elapsed(self.start, self.end)

    @property
    def seconds(self) -> int:
        """Whole seconds in the period (periods start and end on whole seconds in practice)."""
        return self.duration // _SECOND

    def contains(self, instant: datetime) -> bool:
        return elapsed(self.start, instant) >= timedelta(0) and elapsed(
            instant, self.end
        ) > timedelta(0)

    def fraction(self, start: datetime, end: datetime) -> Fraction:
        """Share of this period between two instants inside it, exact, by elapsed time."""
        for name, instant in (("start", start), ("end", end)):
            if elapsed(self.start, instant) < timedelta(0) or elapsed(
                instant, self.end
            ) < timedelta(0):
                raise ValueError(
                    f"{name} {instant.isoformat()} lies outside the period {self.label}"
                )
        part = elapsed(start, end)
        if part < timedelta(0):
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        return Fraction(part // _MICROSECOND, self.duration // _MICROSECOND)

    def seconds_between(self, start: datetime, end: datetime) -> int:
        """Whole seconds of this period in ``[start, end)``, counting by the second: each
        instant is measured from the period's start and cut to its whole second, so spans that
        meet add up to exactly the seconds of their union (proration counts these)."""
        self.fraction(start, end)  # refuses instants outside the period and end < start
        return elapsed(self.start, end) // _SECOND - elapsed(self.start, start) // _SECOND

    @property
    def is_calendar_month(self) -> bool:
        """True when the period runs from one local month start to the next."""
        start, end = self.start, self.end.astimezone(self.start.tzinfo)
        next_year, next_month = _add_months(start.year, start.month, 1)
        return (
            start.day == 1
            and start.time() == end.time() == datetime.min.time()
            and end.day == 1
            and (end.year, end.month) == (next_year, next_month)
        )

    @property
    def label(self) -> str:
        """'2026-10' for a calendar month, '2026-10-05 – 2026-11-05' otherwise (local dates)."""
        if self.is_calendar_month:
            return f"{self.start:%Y-%m}"
        end = self.end.astimezone(self.start.tzinfo)
        return f"{self.start:%Y-%m-%d} – {end:%Y-%m-%d}"


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _local(year: int, month: int, day: int, template: datetime) -> datetime:
    """A wall-clock time in the template's zone, normalised through UTC.

    A wall time that does not exist (inside a spring-forward gap) comes out as the instant
    just after the gap; an ambiguous one (autumn) as its first occurrence.
    """
    tz = template.tzinfo
    wall = datetime(
        year, month, day, template.hour, template.minute, template.second,
        template.microsecond, tzinfo=tz,
    )  # fmt: skip
    return wall.astimezone(UTC).astimezone(tz)


def calendar_period_containing(instant: datetime, tz_name: str) -> Period:
    """The calendar month, in the given zone, that contains the instant."""
    _require_aware(instant, "instant")
    tz = zone(tz_name)
    local = instant.astimezone(tz)
    midnight = datetime(local.year, local.month, 1, tzinfo=tz)
    year, month = _add_months(local.year, local.month, 1)
    return Period(_local(local.year, local.month, 1, midnight), _local(year, month, 1, midnight))


def next_calendar_period(period: Period, tz_name: str) -> Period:
    """The calendar month that follows the given one."""
    return calendar_period_containing(period.end, tz_name)


def _anniversary_start(anchor_local: datetime, months: int) -> datetime:
    year, month = _add_months(anchor_local.year, anchor_local.month, months)
    # A subscription anchored on the 31st renews on the last day of shorter months, and goes
    # back to the 31st when the month has one: always clamp from the anchor, never chain.
    day = min(anchor_local.day, calendar.monthrange(year, month)[1])
    return _local(year, month, day, anchor_local)


def anniversary_period_containing(instant: datetime, anchor: datetime, tz_name: str) -> Period:
    """The monthly period, counted from the anchor (the subscription start), containing instant."""
    _require_aware(instant, "instant")
    _require_aware(anchor, "anchor")
    tz = zone(tz_name)
    anchor_local = anchor.astimezone(tz)
    local = instant.astimezone(tz)
    months = (local.year - anchor_local.year) * 12 + (local.month - anchor_local.month)
    while elapsed(_anniversary_start(anchor_local, months), instant) < timedelta(0):
        months -= 1
    while elapsed(_anniversary_start(anchor_local, months + 1), instant) >= timedelta(0):
        months += 1
    return Period(
        _anniversary_start(anchor_local, months), _anniversary_start(anchor_local, months + 1)
    )


def next_anniversary_period(period: Period, anchor: datetime, tz_name: str) -> Period:
    """The anniversary period that follows the given one."""
    return anniversary_period_containing(period.end, anchor, tz_name)


def period_containing(
    kind: BillingPeriodKind, instant: datetime, tz_name: str, anchor: datetime | None = None
) -> Period:
    """The billing period of a plan's kind containing the instant (anchor: anniversary only)."""
    if kind == "calendar_month":
        return calendar_period_containing(instant, tz_name)
    if anchor is None:
        raise ValueError("anniversary periods need the subscription's anchor instant")
    return anniversary_period_containing(instant, anchor, tz_name)


def next_period(
    kind: BillingPeriodKind, period: Period, tz_name: str, anchor: datetime | None = None
) -> Period:
    """The billing period of a plan's kind that follows the given one."""
    return period_containing(kind, period.end, tz_name, anchor)
