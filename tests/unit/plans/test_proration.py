"""Mid-period plan changes, prorated by elapsed seconds: amount × seconds / period seconds,
exact, rounded half-up once per line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from plans import (
    Catalog,
    CurrencyMismatchError,
    Period,
    calendar_period_containing,
    load_catalog,
    parse_catalog,
    prorate_change,
    prorated_amount,
)
from plans.proration import describe_share

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_upgrade_mid_month_credits_old_fee_and_charges_new(
    catalog: Catalog, october: Period
) -> None:
    # October has 31 days; the change on Oct 16 00:00 leaves 16 of them.
    result = prorate_change(
        catalog.latest("basic"),
        catalog.latest("advanced"),
        period=october,
        changed_at=datetime(2026, 10, 16, tzinfo=SHANGHAI),
    )
    assert [(line.charge_code, line.amount_minor) for line in result.lines] == [
        # used: round(9,900 × 15/31) = round(4,790.32) = 4,790 → credit 9,900 − 4,790
        ("monthly_fee", -5_110),
        # used: round(30,000 × 15/31) = round(14,516.13) = 14,516 → charge 30,000 − 14,516
        ("monthly_fee", 15_484),
    ]
    assert result.net_minor == 10_374
    assert result.is_invoiced_immediately  # advanced invoices prorations immediately
    credit, charge = result.lines
    assert credit.kind == charge.kind == "proration"
    assert credit.period_start == datetime(2026, 10, 16, tzinfo=SHANGHAI)
    assert credit.period_end == october.end
    assert credit.explanation == (
        "credit for 16 d of 31 d (16 Oct – 1 Nov, Asia/Shanghai): 51.61% of ¥99.00"
    )


def test_downgrade_to_basic_waits_for_the_next_invoice(catalog: Catalog, october: Period) -> None:
    result = prorate_change(
        catalog.latest("advanced"),
        catalog.latest("basic"),
        period=october,
        changed_at=datetime(2026, 10, 16, tzinfo=SHANGHAI),
    )
    assert result.net_minor == -10_374  # the mirror image of the upgrade
    assert not result.is_invoiced_immediately


def test_addons_are_prorated_with_the_fee(catalog: Catalog, october: Period) -> None:
    # taking the tooling bundle (¥1,000) for the last 16 of 31 days
    result = prorate_change(
        catalog.latest("basic"),
        catalog.latest("basic"),
        period=october,
        changed_at=datetime(2026, 10, 16, tzinfo=SHANGHAI),
        new_addons=["fast_response", "tooling_bundle"],
        old_addons=["fast_response"],
    )
    # fee and fast response would be credited and charged again identically: no lines for them
    # tooling: round(100,000 × 16/31) = round(51,612.90) = 51,613
    assert [(line.charge_code, line.amount_minor) for line in result.lines] == [
        ("tooling_bundle", 51_613)
    ]


def test_an_addon_taken_mid_period_is_prorated_from_the_exact_share_once() -> None:
    """The issue's case: 896,400 of 2,592,000 s of ¥39.60 is exactly ¥13.695 → ¥13.70."""
    catalog = load_catalog()
    june = Period(datetime(2026, 6, 1, tzinfo=SHANGHAI), datetime(2026, 7, 1, tzinfo=SHANGHAI))
    changed_at = datetime(2026, 6, 20, 15, tzinfo=SHANGHAI)  # 10 d 9 h = 896,400 s remain
    result = prorate_change(
        catalog.latest("basic"),
        catalog.latest("basic"),
        period=june,
        changed_at=changed_at,
        new_addons=["fast_response"],
    )
    (line,) = result.lines  # the monthly fee's −¥34.24 / +¥34.24 pair is not written
    assert (line.kind, line.charge_code, line.amount_minor) == ("proration", "fast_response", 1_370)
    assert line.quantity == Decimal("0.345833")  # shown to people; the amount uses the exact share
    assert line.explanation == (
        "charge for 10 d 9 h of 30 d (20 Jun 15:00 – 1 Jul, Asia/Shanghai): 34.58% of ¥39.60"
    )
    assert result.net_minor == 1_370
    assert prorated_amount(3_960, june, changed_at, june.end) == 1_370


def test_a_real_change_of_the_same_item_is_still_written(catalog: Catalog, october: Period) -> None:
    # The custom fee renegotiated from ¥1,200 to ¥1,500: the same item, a real difference.
    result = prorate_change(
        catalog.latest("custom"),
        catalog.latest("custom"),
        period=october,
        changed_at=datetime(2026, 10, 16, tzinfo=SHANGHAI),
        new_overrides={"monthly_fee": {"amount_minor": 150_000}},
    )
    # round(120,000 × 16/31) = round(61,935.48); round(150,000 × 16/31) = round(77,419.35)
    assert [(line.charge_code, line.amount_minor) for line in result.lines] == [
        ("monthly_fee", -61_935),
        ("monthly_fee", 77_419),
    ]


def test_upgrade_then_downgrade_nets_to_what_was_used(catalog: Catalog, october: Period) -> None:
    basic, advanced = catalog.latest("basic"), catalog.latest("advanced")
    ten_days = datetime(2026, 10, 11, tzinfo=SHANGHAI)  # 10 of 31 days elapsed
    twenty_days = datetime(2026, 10, 21, tzinfo=SHANGHAI)  # 20 of 31 days elapsed
    up = prorate_change(basic, advanced, period=october, changed_at=ten_days)
    down = prorate_change(advanced, basic, period=october, changed_at=twenty_days)
    # each line rounded once from its exact share:
    # up:   −round(9,900 × 21/31) = −6,706; +round(30,000 × 21/31) = +20,323
    # down: −round(30,000 × 11/31) = −10,645; +round(9,900 × 11/31) = +3,513
    assert [line.amount_minor for line in (*up.lines, *down.lines)] == [
        -6_706, 20_323, -10_645, 3_513,
    ]  # fmt: skip
    paid = 9_900 + up.net_minor + down.net_minor  # basic fee billed in advance + prorations
    assert paid == 16_385
    # exact: (9,900 × 21 + 30,000 × 10) / 31 = 16,383.87; four lines, each within half a fen
    assert abs(paid - Fraction(9_900 * 21 + 30_000 * 10, 31)) <= 2


def test_proration_counts_real_seconds_across_dst(catalog: Catalog) -> None:
    march = calendar_period_containing(datetime(2026, 3, 10, tzinfo=UTC), "Europe/Berlin")
    changed_at = datetime(2026, 3, 16, tzinfo=ZoneInfo("Europe/Berlin"))
    result = prorate_change(
        catalog.latest("basic"), catalog.latest("advanced"), period=march, changed_at=changed_at
    )
    credit = result.lines[0]
    # 743 h in Berlin's March, 360 h elapsed: round(9,900 × 360/743) = round(4,796.77) = 4,797
    assert credit.amount_minor == -(9_900 - 4_797)
    # 383 h of 743 h remain, in Berlin's time
    assert "15 d 23 h of 30 d 23 h (16 Mar – 1 Apr, Europe/Berlin)" in credit.explanation


def test_change_at_the_period_edges(catalog: Catalog, october: Period) -> None:
    basic, advanced = catalog.latest("basic"), catalog.latest("advanced")
    whole = prorate_change(basic, advanced, period=october, changed_at=october.start)
    assert [line.amount_minor for line in whole.lines] == [-9_900, 30_000]
    at_end = prorate_change(basic, advanced, period=october, changed_at=october.end)
    assert at_end.lines == ()
    assert at_end.net_minor == 0
    with pytest.raises(ValueError, match="outside the period"):
        prorate_change(basic, advanced, period=october, changed_at=october.end + timedelta(days=1))


def test_full_period_and_halves(october: Period) -> None:
    assert prorated_amount(9_999, october, october.start, october.end) == 9_999
    middle = datetime(2026, 10, 16, 12, tzinfo=SHANGHAI)  # exactly half of 31 days
    first = prorated_amount(9_999, october, october.start, middle)
    second = prorated_amount(9_999, october, middle, october.end)
    # each half is 4,999.5 exactly and rounds up on its own: the halves make one fen more
    assert (first, second) == (5_000, 5_000)


def test_instants_count_by_the_whole_second(october: Period) -> None:
    changed_at = datetime(2026, 10, 16, 0, 0, 0, 999_999, tzinfo=SHANGHAI)
    on_the_second = changed_at.replace(microsecond=0)
    assert prorated_amount(9_900, october, changed_at, october.end) == prorated_amount(
        9_900, october, on_the_second, october.end
    )


def test_plans_in_different_currencies_cannot_be_prorated(
    catalog: Catalog, october: Period
) -> None:
    usd = parse_catalog(
        '[[plans]]\ncode = "intl"\nversion = 1\nname = "Intl"\ntier = "basic"\n'
        'currency = "USD"\nbilling_period = "calendar_month"\nproration_invoicing = "immediately"\n'
        '[[plans.charges]]\ncode = "monthly_fee"\nmodel = "flat_fee"\ndescription = "Fee"\n'
        "amount_minor = 1_500\n"
    ).latest("intl")
    with pytest.raises(CurrencyMismatchError, match="plan change"):
        prorate_change(catalog.latest("basic"), usd, period=october, changed_at=october.start)


def test_a_proration_line_reads_in_days_hours_and_local_dates_with_its_zone_named() -> None:
    """People read the share of the period in days and hours and the dates in the merchant's
    zone, whatever zone the change instant arrived in (here UTC)."""
    catalog = load_catalog()
    november = Period(
        datetime(2026, 11, 1, tzinfo=SHANGHAI), datetime(2026, 12, 1, tzinfo=SHANGHAI)
    )
    changed_at = datetime(2026, 11, 16, 6, 37, tzinfo=UTC)  # 14:37 in Shanghai
    credit, charge = prorate_change(
        catalog.latest("basic"), catalog.latest("advanced"), period=november, changed_at=changed_at
    ).lines
    assert credit.description == "Basic monthly service fee (basic v1, unused time)"
    assert credit.explanation == (
        "credit for 14 d 9 h 23 min of 30 d (16 Nov 14:37 – 1 Dec, Asia/Shanghai): 47.97% of ¥99.00"
    )
    assert charge.explanation.startswith("charge for 14 d 9 h 23 min of 30 d (16 Nov 14:37")
    assert "s of" not in credit.explanation  # no seconds counts for people to divide


def test_a_share_across_new_year_names_both_years() -> None:
    december = Period(datetime(2026, 12, 1, tzinfo=SHANGHAI), datetime(2027, 1, 1, tzinfo=SHANGHAI))
    assert describe_share(december, datetime(2026, 12, 14, 1, tzinfo=SHANGHAI), december.end) == (
        "17 d 23 h of 31 d (14 Dec 2026 01:00 – 1 Jan 2027, Asia/Shanghai)"
    )
