"""Proration rounds once, at the line, from the exact share of seconds (hypothesis).

For any amount and any split of a period into seconds, each prorated piece is
``round_half_up(amount × seconds / period seconds)``, and the pieces of a period split at several
instants add up to the whole within half a minor unit per piece.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from plans import (
    Period,
    calendar_period_containing,
    load_catalog,
    prorate_change,
    prorated_amount,
    recurring_lines,
    resolve_terms,
    round_half_up,
)

CATALOG = load_catalog()
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]

months = st.tuples(st.integers(2020, 2035), st.integers(1, 12), st.sampled_from(ZONES)).map(
    lambda ymz: calendar_period_containing(
        datetime(ymz[0], ymz[1], 15, tzinfo=ZoneInfo(ymz[2])), ymz[2]
    )
)
amounts = st.integers(-(10**9), 10**9)


def _at(period: Period, second: int) -> datetime:
    # real seconds in UTC: wall-clock addition would overshoot a DST month
    return period.start.astimezone(UTC) + timedelta(seconds=second)


def _exact(amount: int, seconds: int, period: Period) -> int:
    return round_half_up(Fraction(amount * seconds, period.seconds))


@settings(max_examples=150, deadline=None)
@given(period=months, amount=amounts, data=st.data())
def test_each_piece_is_the_exact_share_rounded_half_up_once(
    period: Period, amount: int, data: st.DataObject
) -> None:
    start, end = sorted(data.draw(st.lists(st.integers(0, period.seconds), min_size=2, max_size=2)))
    piece = prorated_amount(amount, period, _at(period, start), _at(period, end))
    assert piece == _exact(amount, end - start, period)


@settings(max_examples=150, deadline=None)
@given(
    period=months,
    amount=amounts,
    cuts=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6),
)
def test_pieces_of_a_split_period_add_up_to_the_whole_within_half_a_unit_each(
    period: Period, amount: int, cuts: list[float]
) -> None:
    seconds = sorted({0, period.seconds, *(int(period.seconds * cut) for cut in cuts)})
    pieces = [
        prorated_amount(amount, period, _at(period, a), _at(period, b))
        for a, b in itertools.pairwise(seconds)
    ]
    for piece, (a, b) in zip(pieces, itertools.pairwise(seconds), strict=True):
        assert piece == _exact(amount, b - a, period)
    # each piece is within half a minor unit of its exact share, and the shares sum to the whole
    assert abs(sum(pieces) - amount) <= len(pieces) // 2


@st.composite
def addon_sets(draw: st.DrawFn, plan_code: str) -> list[str]:
    """Add-ons the plan offers, at most one of each exclusive group."""
    chosen: list[str] = []
    groups: set[str] = set()
    for addon in draw(st.permutations(CATALOG.latest(plan_code).addons)):
        if draw(st.booleans()) and addon.exclusive_group not in groups:
            chosen.append(addon.code)
            if addon.exclusive_group:
                groups.add(addon.exclusive_group)
    return chosen


@st.composite
def changes(draw: st.DrawFn) -> tuple[str, list[str], str, list[str]]:
    old = draw(st.sampled_from(CATALOG.codes()))
    new = draw(st.sampled_from(CATALOG.codes()))
    return old, draw(addon_sets(old)), new, draw(addon_sets(new))


@settings(max_examples=150, deadline=None)
@given(period=months, change=changes(), data=st.data())
def test_every_proration_line_is_its_full_period_amount_times_the_exact_share(
    period: Period, change: tuple[str, list[str], str, list[str]], data: st.DataObject
) -> None:
    old_code, old_addons, new_code, new_addons = change
    second = data.draw(st.integers(0, period.seconds))
    changed_at = _at(period, second)
    result = prorate_change(
        CATALOG.latest(old_code),
        CATALOG.latest(new_code),
        period=period,
        changed_at=changed_at,
        old_addons=old_addons,
        new_addons=new_addons,
    )
    remaining = period.seconds - second
    old_lines = recurring_lines(resolve_terms(CATALOG.latest(old_code), old_addons), period)
    new_lines = recurring_lines(resolve_terms(CATALOG.latest(new_code), new_addons), period)
    expected = [
        (line.charge_code, -_exact(line.amount_minor, remaining, period)) for line in old_lines
    ] + [(line.charge_code, _exact(line.amount_minor, remaining, period)) for line in new_lines]
    written = [(line.charge_code, line.amount_minor) for line in result.lines]
    # no item is credited and charged again by the same amount: such a pair is not written
    assert not any((code, -amount) in written for code, amount in written if amount)
    # every written line is one of the expected ones; what is left out is zero or a pair of
    # the same item that nets to zero
    left_out = list(expected)
    for line in written:
        left_out.remove(line)
    by_item: dict[str, int] = {}
    for code, amount in left_out:
        by_item[code] = by_item.get(code, 0) + amount
    assert all(total == 0 for total in by_item.values())
    assert result.net_minor == sum(amount for _, amount in expected)
