"""Which tier fits: every plan quoted on the same usage, and where the cheapest one changes."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from plans import Catalog, Period, UsageAggregate, compare_plans, parse_catalog

D = Decimal


def orders(count: int, gmv_minor: int = 0) -> dict[str, UsageAggregate]:
    return {"orders": UsageAggregate(count=count, quantity=D(count), gmv_minor=gmv_minor)}


def test_large_merchant_is_cheapest_on_advanced(catalog: Catalog, october: Period) -> None:
    comparison = compare_plans(
        catalog, period=october, aggregates=orders(20_000, gmv_minor=35_000_000)
    )
    assert [(q.plan_code, q.total_minor) for q in comparison.quotes] == [
        ("advanced", 180_000),  # ¥300 + (20,000 − 15,000) × ¥0.30 = ¥1,800.00
        ("custom", 595_000),  # ¥1,200 + 20,000 × ¥0.20 + ¥250,000 × 0.30% = ¥5,950.00
        ("basic", 859_900),  # ¥99 + (20,000 − 3,000) × ¥0.50 = ¥8,599.00
    ]
    assert comparison.cheapest.plan_code == "advanced"
    found = {(b.axis, b.instead_of_plan, b.cheaper_plan): b for b in comparison.break_evens}
    # basic > advanced once ¥99 + (n − 3,000) × ¥0.50 > ¥300, i.e. n > 3,402
    basic_to_advanced = found[("orders", "basic", "advanced")]
    assert basic_to_advanced.from_value == 3_403
    assert (basic_to_advanced.cheaper_total_minor, basic_to_advanced.instead_of_total_minor) == (
        30_000,
        30_050,
    )
    assert basic_to_advanced.explanation == (
        "from 3,403 orders a period, Advanced costs less than Basic: ¥300.00 against ¥300.50"
    )
    # with GMV at ¥350,000: custom ¥1,950 + ¥0.20 n < advanced ¥300 + ¥0.30 (n − 15,000)
    # ⇔ n > 61,500
    assert found[("orders", "advanced", "custom")].from_value == 61_501
    # more GMV only makes custom dearer, and advanced is cheaper than basic at any GMV here
    assert ("gmv", "advanced", "custom") not in found
    assert ("gmv", "basic", "advanced") not in found


def test_small_merchant_is_cheapest_on_basic(catalog: Catalog, october: Period) -> None:
    comparison = compare_plans(
        catalog, period=october, aggregates=orders(1_000, gmv_minor=5_000_000)
    )
    assert [(q.plan_code, q.total_minor) for q in comparison.quotes] == [
        ("basic", 9_900),  # within the 3,000 included orders
        ("advanced", 30_000),
        ("custom", 140_000),  # ¥1,200 + 1,000 × ¥0.20, GMV under the threshold
    ]
    found = {(b.axis, b.instead_of_plan): b.from_value for b in comparison.break_evens}
    assert found[("orders", "basic")] == 3_403
    # below the GMV threshold: ¥1,200 + ¥0.20 n < ¥0.30 n − ¥4,200 ⇔ n > 54,000
    assert found[("orders", "advanced")] == 54_001


def test_quotes_include_addons_and_tax(catalog: Catalog, october: Period) -> None:
    comparison = compare_plans(
        catalog,
        period=october,
        aggregates=orders(3_600),
        addons={"basic": ["fast_response"]},
        tax_rate=D("0.06"),
    )
    basic = next(q for q in comparison.quotes if q.plan_code == "basic")
    # (¥99 + ¥300 + ¥39.60) × 1.06 = ¥438.60 + ¥26.316 → ¥464.92
    assert basic.total_minor == 43_860 + 2_632
    assert msgspec.json.decode(msgspec.json.encode(comparison))["quotes"][0]["plan_code"]


GMV_PLANS = """
[[plans]]
code = "light"
version = 1
name = "Light"
tier = "basic"
currency = "CNY"
billing_period = "calendar_month"
proration_invoicing = "immediately"
[[plans.charges]]
code = "gmv_fee"
model = "percentage"
description = "GMV fee"
metric = "orders"
rate = "0.01"

[[plans]]
code = "pro"
version = 1
name = "Pro"
tier = "advanced"
currency = "CNY"
billing_period = "calendar_month"
proration_invoicing = "immediately"
[[plans.charges]]
code = "monthly_fee"
model = "flat_fee"
description = "Fee"
amount_minor = 50_000
[[plans.charges]]
code = "gmv_fee"
model = "percentage"
description = "GMV fee"
metric = "orders"
rate = "0.002"
"""


def test_break_even_on_gmv(october: Period) -> None:
    catalog = parse_catalog(GMV_PLANS)
    comparison = compare_plans(catalog, period=october, aggregates=orders(100, gmv_minor=100_000))
    (found,) = comparison.break_evens
    assert (found.axis, found.instead_of_plan, found.cheaper_plan) == ("gmv", "light", "pro")
    # light: round(1% × g); pro: 50,000 + round(0.2% × g), in fen.
    # 0.8% × g > 50,000 from g = 6,250,001, but both round to 62,500 until light's
    # 1% × g reaches 62,500.5 at g = 6,250,050 (pro: 50,000 + round(12,500.1) = 62,500).
    assert found.from_value == 6_250_050
    assert (found.cheaper_total_minor, found.instead_of_total_minor) == (62_500, 62_501)
