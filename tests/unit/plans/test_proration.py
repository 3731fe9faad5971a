"""Mid-period plan changes, prorated by elapsed seconds with cumulative rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from plans import (
    Catalog,
    CurrencyMismatchError,
    Period,
    calendar_period_containing,
    parse_catalog,
    prorate_change,
    prorated_amount,
)

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
        "credit for 1,382,400 of 2,678,400 s of 2026-10 (51.61%) × ¥99.00"
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
    amounts = {}
    for line in result.lines:
        amounts[line.charge_code] = amounts.get(line.charge_code, 0) + line.amount_minor
    # fee and fast response are credited and recharged identically: they net to zero
    assert amounts == {"monthly_fee": 0, "fast_response": 0, "tooling_bundle": 51_613}
    # tooling: 100,000 − round(100,000 × 15/31) = 100,000 − round(48,387.10) = 51,613


def test_upgrade_then_downgrade_nets_to_what_was_used(catalog: Catalog, october: Period) -> None:
    basic, advanced = catalog.latest("basic"), catalog.latest("advanced")
    ten_days = datetime(2026, 10, 11, tzinfo=SHANGHAI)  # 10 of 31 days elapsed
    twenty_days = datetime(2026, 10, 21, tzinfo=SHANGHAI)  # 20 of 31 days elapsed
    up = prorate_change(basic, advanced, period=october, changed_at=ten_days)
    down = prorate_change(advanced, basic, period=october, changed_at=twenty_days)
    paid = 9_900 + up.net_minor + down.net_minor  # basic fee billed in advance + prorations
    # basic for days 0–10: round(9,900 × 10/31) = round(3,193.55) = 3,194
    # advanced for days 10–20: round(30,000 × 20/31) − round(30,000 × 10/31)
    #                          = 19,355 − 9,677 = 9,678
    # basic for days 20–31: 9,900 − round(9,900 × 20/31) = 9,900 − 6,387 = 3,513
    assert paid == 3_194 + 9_678 + 3_513 == 16_385
    # exact: (9,900 × 21 + 30,000 × 10) / 31 = 16,383.87: within one fen per change
    assert abs(paid - Decimal(9_900 * 21 + 30_000 * 10) / 31) <= 2
    assert paid == (
        prorated_amount(9_900, october, october.start, ten_days)
        + prorated_amount(30_000, october, ten_days, twenty_days)
        + prorated_amount(9_900, october, twenty_days, october.end)
    )


def test_proration_counts_real_seconds_across_dst(catalog: Catalog) -> None:
    march = calendar_period_containing(datetime(2026, 3, 10, tzinfo=UTC), "Europe/Berlin")
    changed_at = datetime(2026, 3, 16, tzinfo=ZoneInfo("Europe/Berlin"))
    result = prorate_change(
        catalog.latest("basic"), catalog.latest("advanced"), period=march, changed_at=changed_at
    )
    credit = result.lines[0]
    # 743 h in Berlin's March, 360 h elapsed: round(9,900 × 360/743) = round(4,796.77) = 4,797
    assert credit.amount_minor == -(9_900 - 4_797)
    assert "1,378,800 of 2,674,800 s" in credit.explanation  # 383 h of 743 h remain


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
    assert (first, second) == (5_000, 4_999)  # 4,999.5 rounds up once, the rest is the rest


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
