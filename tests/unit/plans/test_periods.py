"""Billing periods in a merchant's timezone: calendar months and anniversaries, DST-aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from plans.periods import (
    Period,
    anniversary_period_containing,
    calendar_period_containing,
    elapsed,
    next_anniversary_period,
    next_calendar_period,
    next_period,
    period_containing,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86_400


def test_calendar_month_is_taken_in_the_merchants_zone() -> None:
    # 2026-10-31 16:30 UTC is already 2026-11-01 00:30 in Shanghai (UTC+8)
    period = calendar_period_containing(datetime(2026, 10, 31, 16, 30, tzinfo=UTC), "Asia/Shanghai")
    assert period.start == datetime(2026, 11, 1, tzinfo=SHANGHAI)
    assert period.end == datetime(2026, 12, 1, tzinfo=SHANGHAI)
    assert period.start.astimezone(UTC) == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert period.label == "2026-11"
    assert period.seconds == 30 * DAY


def test_last_instant_of_a_month_belongs_to_it() -> None:
    # 2026-10-31 15:59:59 UTC = 23:59:59 Shanghai, still October
    period = calendar_period_containing(
        datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC), "Asia/Shanghai"
    )
    assert period.label == "2026-10"
    assert not period.contains(period.end)
    assert period.contains(period.start)


def test_berlin_march_is_an_hour_short_and_october_an_hour_long() -> None:
    march = calendar_period_containing(datetime(2026, 3, 10, tzinfo=UTC), "Europe/Berlin")
    # DST starts 2026-03-29: 31 days minus one hour
    assert march.seconds == 31 * DAY - 3_600 == 2_674_800
    assert march.start.utcoffset() == timedelta(hours=1)
    assert march.end.utcoffset() == timedelta(hours=2)
    october = calendar_period_containing(datetime(2026, 10, 10, tzinfo=UTC), "Europe/Berlin")
    # DST ends 2026-10-25: 31 days plus one hour
    assert october.seconds == 31 * DAY + 3_600 == 2_682_000


def test_berlin_month_boundary_uses_local_midnight() -> None:
    # 2026-10-31 23:30 UTC is 2026-11-01 00:30 CET
    period = calendar_period_containing(datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "Europe/Berlin")
    assert period.label == "2026-11"
    assert period.start == datetime(2026, 11, 1, tzinfo=BERLIN)


def test_next_calendar_period_rolls_over_the_year() -> None:
    december = calendar_period_containing(datetime(2026, 12, 5, tzinfo=SHANGHAI), "Asia/Shanghai")
    january = next_calendar_period(december, "Asia/Shanghai")
    assert january.start == december.end == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert january.label == "2027-01"
    assert january.seconds == 31 * DAY


def test_anniversary_periods_clamp_to_month_end_and_come_back() -> None:
    anchor = datetime(2026, 1, 31, 10, 0, tzinfo=SHANGHAI)
    february = anniversary_period_containing(
        datetime(2026, 2, 15, tzinfo=SHANGHAI), anchor, "Asia/Shanghai"
    )
    assert february.start == anchor
    assert february.end == datetime(2026, 2, 28, 10, 0, tzinfo=SHANGHAI)
    march = next_anniversary_period(february, anchor, "Asia/Shanghai")
    assert march.start == datetime(2026, 2, 28, 10, 0, tzinfo=SHANGHAI)
    assert march.end == datetime(2026, 3, 31, 10, 0, tzinfo=SHANGHAI)  # back to the 31st
    april = next_anniversary_period(march, anchor, "Asia/Shanghai")
    assert april.end == datetime(2026, 4, 30, 10, 0, tzinfo=SHANGHAI)
    assert april.label == "2026-03-31 – 2026-04-30"


def test_anniversary_in_a_leap_year_lands_on_february_29() -> None:
    anchor = datetime(2028, 1, 30, 9, 0, tzinfo=SHANGHAI)
    period = anniversary_period_containing(
        datetime(2028, 3, 1, tzinfo=SHANGHAI), anchor, "Asia/Shanghai"
    )
    assert period.start == datetime(2028, 2, 29, 9, 0, tzinfo=SHANGHAI)
    assert period.end == datetime(2028, 3, 30, 9, 0, tzinfo=SHANGHAI)


def test_anniversary_keeps_local_time_across_dst() -> None:
    anchor = datetime(2026, 3, 15, 9, 0, tzinfo=BERLIN)  # CET
    period = anniversary_period_containing(anchor, anchor, "Europe/Berlin")
    assert period.end == datetime(2026, 4, 15, 9, 0, tzinfo=BERLIN)  # CEST, still 09:00 local
    assert period.seconds == 31 * DAY - 3_600


def test_anniversary_start_inside_the_spring_gap_moves_past_it() -> None:
    # anchored at 02:30 on the 29th; on 2026-03-29 02:30 does not exist in Berlin
    anchor = datetime(2026, 1, 29, 2, 30, tzinfo=BERLIN)
    period = anniversary_period_containing(
        datetime(2026, 3, 29, 1, 45, tzinfo=UTC), anchor, "Europe/Berlin"
    )
    # 01:30 UTC is when 02:30 CET would have been: 03:30 CEST
    assert period.start.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert period.end == datetime(2026, 4, 29, 2, 30, tzinfo=BERLIN)
    previous = anniversary_period_containing(
        period.start - timedelta(seconds=1), anchor, "Europe/Berlin"
    )
    assert previous.end == period.start


def test_instant_before_the_anchor_gets_the_period_before() -> None:
    anchor = datetime(2026, 5, 10, tzinfo=SHANGHAI)
    period = anniversary_period_containing(
        datetime(2026, 5, 1, tzinfo=SHANGHAI), anchor, "Asia/Shanghai"
    )
    assert (period.start, period.end) == (datetime(2026, 4, 10, tzinfo=SHANGHAI), anchor)


def test_period_containing_dispatches_on_the_plans_period_kind() -> None:
    instant = datetime(2026, 6, 20, tzinfo=SHANGHAI)
    anchor = datetime(2026, 1, 12, tzinfo=SHANGHAI)
    assert period_containing("calendar_month", instant, "Asia/Shanghai").label == "2026-06"
    anniversary = period_containing("anniversary", instant, "Asia/Shanghai", anchor)
    assert anniversary.start == datetime(2026, 6, 12, tzinfo=SHANGHAI)
    following = next_period("anniversary", anniversary, "Asia/Shanghai", anchor)
    assert following.start == datetime(2026, 7, 12, tzinfo=SHANGHAI)
    with pytest.raises(ValueError, match="anchor"):
        period_containing("anniversary", instant, "Asia/Shanghai")


def test_naive_datetimes_and_unknown_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar_period_containing(datetime(2026, 1, 1), "Asia/Shanghai")
    with pytest.raises(ValueError, match="unknown timezone"):
        calendar_period_containing(datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus")
    with pytest.raises(ValueError, match="after its start"):
        Period(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_elapsed_is_real_time_not_wall_clock() -> None:
    # wall clocks show 24 h between these; only 23 h pass (spring forward)
    before = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    after = datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN)
    assert elapsed(before, after) == timedelta(hours=23)


def test_fraction_is_exact_and_bounded_by_the_period() -> None:
    march = calendar_period_containing(datetime(2026, 3, 10, tzinfo=UTC), "Europe/Berlin")
    middle = datetime(2026, 3, 16, tzinfo=BERLIN)  # 15 days = 360 h of 743 h elapsed
    assert march.fraction(march.start, middle) == Fraction(360, 743)
    assert march.fraction(march.start, march.end) == 1
    with pytest.raises(ValueError, match="outside"):
        march.fraction(march.start, datetime(2026, 4, 2, tzinfo=BERLIN))
    with pytest.raises(ValueError, match="before start"):
        march.fraction(middle, march.start)
