"""Every charge model against hand-worked figures (amounts in fen, ¥1 = 100 fen)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
import pytest

from plans.charges import (
    Charge,
    FlatAddon,
    FlatFee,
    Graduated,
    MinimumCommitment,
    Package,
    Percentage,
    PercentageDiscount,
    PerHour,
    PerUnit,
    RatingContext,
    Surcharge,
    Tier,
    UsageAggregate,
    Volume,
)
from plans.lines import InvoiceLine
from plans.periods import Period

SHANGHAI = ZoneInfo("Asia/Shanghai")
OCTOBER = Period(datetime(2026, 10, 1, tzinfo=SHANGHAI), datetime(2026, 11, 1, tzinfo=SHANGHAI))
NOVEMBER = Period(datetime(2026, 11, 1, tzinfo=SHANGHAI), datetime(2026, 12, 1, tzinfo=SHANGHAI))
D = Decimal


def context(
    *,
    orders: int = 0,
    gmv_minor: int = 0,
    hours: str = "0",
    fee_period: Period | None = NOVEMBER,
    lines: tuple[InvoiceLine, ...] = (),
) -> RatingContext:
    return RatingContext(
        currency="CNY",
        exponent=2,
        usage_period=OCTOBER,
        fee_period=fee_period,
        aggregates={
            "orders": UsageAggregate(count=orders, quantity=D(orders), gmv_minor=gmv_minor),
            "support_hours": UsageAggregate(count=1, quantity=D(hours)),
        },
        lines=lines,
    )


def only_line(charge: Charge, ctx: RatingContext) -> InvoiceLine:
    lines = charge.lines(ctx)
    assert len(lines) == 1, lines
    return lines[0]


def line(kind: str, amount_minor: int, period: Period = NOVEMBER, code: str = "x") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,  # type: ignore[arg-type]
        charge_code=code,
        description=code,
        quantity=D(1),
        amount_minor=amount_minor,
        currency="CNY",
        period_start=period.start,
        period_end=period.end,
        explanation="",
    )


ORDERS_FEE = PerUnit(
    code="orders", description="Handled orders", metric="orders", unit_price=D("0.50"),
    included_units=D(3000),
)  # fmt: skip
TIERS = (
    Tier(up_to=D(1000), unit_price=D("1.00")),
    Tier(up_to=D(5000), unit_price=D("0.50")),
    Tier(up_to=None, unit_price=D("0.25")),
)


# -- flat fee and flat add-on -----------------------------------------------------------------


def test_flat_fee_is_billed_in_advance_for_the_fee_period() -> None:
    fee = FlatFee(code="monthly_fee", description="Monthly fee", amount_minor=9_900)
    result = only_line(fee, context())
    assert (result.kind, result.amount_minor) == ("fee", 9_900)  # ¥99.00
    assert (result.period_start, result.period_end) == (NOVEMBER.start, NOVEMBER.end)
    assert result.unit_price == D("99.00")
    assert result.explanation == "¥99.00 for 2026-11, billed in advance"


def test_flat_fee_is_not_billed_without_a_fee_period() -> None:
    fee = FlatFee(code="monthly_fee", description="Monthly fee", amount_minor=9_900)
    assert fee.lines(context(fee_period=None)) == []


def test_flat_addon_is_an_addon_line() -> None:
    tooling = FlatAddon(code="tooling_bundle", description="Tooling", amount_minor=100_000)
    result = only_line(tooling, context())
    assert (result.kind, result.amount_minor) == ("addon", 100_000)  # ¥1,000.00


# -- per unit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orders", "amount_minor", "explanation"),
    [
        # 3,600 − 3,000 included = 600 × ¥0.50 = ¥300.00
        (3_600, 30_000, "3,600 orders: 3,000 included, 600 × ¥0.50"),
        # within the allowance: nothing
        (2_000, 0, "2,000 orders: within 3,000 included"),
        (3_000, 0, "3,000 orders: within 3,000 included"),
        # 1 over: ¥0.50
        (3_001, 50, "3,001 orders: 3,000 included, 1 × ¥0.50"),
    ],
)
def test_per_unit_with_included_units(orders: int, amount_minor: int, explanation: str) -> None:
    result = only_line(ORDERS_FEE, context(orders=orders))
    assert result.amount_minor == amount_minor
    assert result.explanation == explanation
    assert result.quantity == max(0, orders - 3_000)
    assert (result.period_start, result.period_end) == (OCTOBER.start, OCTOBER.end)


def test_per_unit_without_allowance_and_with_a_sub_fen_price() -> None:
    plain = PerUnit(code="orders", description="o", metric="orders", unit_price=D("0.20"))
    # 20,000 × ¥0.20 = ¥4,000.00
    assert only_line(plain, context(orders=20_000)).amount_minor == 400_000
    assert only_line(plain, context(orders=20_000)).explanation == "20,000 orders × ¥0.20"
    tiny = PerUnit(code="orders", description="o", metric="orders", unit_price=D("0.015"))
    # 333 × ¥0.015 = ¥4.995 = 499.5 fen → 500 (half-up, once on the line)
    assert only_line(tiny, context(orders=333)).amount_minor == 500
    # 331 × ¥0.015 = ¥4.965 = 496.5 fen → 497
    assert only_line(tiny, context(orders=331)).amount_minor == 497


# -- graduated and volume tiers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "amount_minor"),
    [
        (0, 0),
        (1_000, 100_000),  # 1,000 × ¥1.00
        (1_001, 100_050),  # 1,000 × ¥1.00 + 1 × ¥0.50
        (5_000, 300_000),  # 1,000 × ¥1.00 + 4,000 × ¥0.50 = ¥3,000.00
        (6_200, 330_000),  # ¥1,000 + ¥2,000 + 1,200 × ¥0.25 = ¥3,300.00
    ],
)
def test_graduated_prices_each_unit_in_its_tier(units: int, amount_minor: int) -> None:
    charge = Graduated(code="orders", description="o", metric="orders", tiers=TIERS)
    assert only_line(charge, context(orders=units)).amount_minor == amount_minor


def test_graduated_explains_each_tier_and_adds_flat_fees() -> None:
    charge = Graduated(code="orders", description="o", metric="orders", tiers=TIERS)
    assert only_line(charge, context(orders=6_200)).explanation == (
        "6,200 orders: 1,000 × ¥1.00 + 4,000 × ¥0.50 + 1,200 × ¥0.25"
    )
    with_flat = Graduated(
        code="orders",
        description="o",
        metric="orders",
        tiers=(TIERS[0], Tier(up_to=D(5000), unit_price=D("0.50"), flat_fee_minor=1_000), TIERS[2]),
    )
    # 1,000 × ¥1.00 + 500 × ¥0.50 + ¥10.00 flat for entering tier 2 = ¥1,260.00
    assert only_line(with_flat, context(orders=1_500)).amount_minor == 126_000
    # the flat fee is not charged before the tier is reached
    assert only_line(with_flat, context(orders=1_000)).amount_minor == 100_000


@pytest.mark.parametrize(
    ("units", "amount_minor", "explanation"),
    [
        (1_000, 100_000, "1,000 orders, all in the tier up to 1,000: 1,000 × ¥1.00"),
        # 1,001 × ¥0.50 = ¥500.50: volume pricing drops at the edge
        (1_001, 50_050, "1,001 orders, all in the tier over 1,000 up to 5,000: 1,001 × ¥0.50"),
        (6_200, 155_000, "6,200 orders, all in the tier over 5,000: 6,200 × ¥0.25"),
        (0, 0, "0 orders: nothing to charge"),
    ],
)
def test_volume_prices_all_units_at_the_reached_tier(
    units: int, amount_minor: int, explanation: str
) -> None:
    charge = Volume(code="orders", description="o", metric="orders", tiers=TIERS)
    result = only_line(charge, context(orders=units))
    assert (result.amount_minor, result.explanation) == (amount_minor, explanation)


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((), "at least one tier"),
        ((Tier(up_to=None, unit_price=D(1)), Tier(up_to=None, unit_price=D(1))), "only the last"),
        ((Tier(up_to=D(10), unit_price=D(1)),), "must be empty"),
        (
            (
                Tier(up_to=D(10), unit_price=D(1)),
                Tier(up_to=D(5), unit_price=D(1)),
                Tier(up_to=None, unit_price=D(1)),
            ),
            r"tiers\[1\].up_to must be greater than 10",
        ),
    ],
)
def test_tiers_must_be_ascending_and_end_open(tiers: tuple[Tier, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Graduated(code="orders", description="o", metric="orders", tiers=tiers)


# -- package ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "included", "amount_minor"),
    [
        (2_350, 0, 120_000),  # ⌈2,350 / 1,000⌉ = 3 blocks × ¥400 = ¥1,200.00
        (2_000, 0, 80_000),  # exactly 2 blocks
        (1, 0, 40_000),  # a started block is a block
        (0, 0, 0),
        (2_350, 500, 80_000),  # 1,850 billable → 2 blocks
    ],
)
def test_package_rounds_blocks_up(units: int, included: int, amount_minor: int) -> None:
    charge = Package(
        code="orders", description="o", metric="orders", package_size=D(1000),
        package_price=D("400.00"), included_units=D(included),
    )  # fmt: skip
    assert only_line(charge, context(orders=units)).amount_minor == amount_minor


def test_package_explanation() -> None:
    charge = Package(
        code="orders", description="o", metric="orders", package_size=D(1000),
        package_price=D("400"),
    )  # fmt: skip
    assert only_line(charge, context(orders=2_350)).explanation == (
        "2,350 orders: 3 blocks of 1,000 × ¥400.00"
    )


# -- percentage (the GMV fee) -----------------------------------------------------------------

GMV_FEE = Percentage(
    code="gmv_fee", description="GMV fee", metric="orders", rate=D("0.003"),
    threshold_minor=10_000_000,
)  # fmt: skip


def test_gmv_fee_charges_only_the_part_above_the_threshold() -> None:
    result = only_line(GMV_FEE, context(orders=20_000, gmv_minor=35_000_000))
    # (¥350,000 − ¥100,000) × 0.30% = ¥750.00
    assert result.amount_minor == 75_000
    assert result.quantity == D("250000.00")
    assert result.rate == D("0.003")
    assert result.explanation == (
        "GMV ¥350,000.00: ¥250,000.00 above the ¥100,000.00 threshold × 0.30%"
    )


def test_gmv_below_the_threshold_costs_nothing() -> None:
    result = only_line(GMV_FEE, context(gmv_minor=8_000_000))
    assert result.amount_minor == 0
    assert result.explanation == "GMV ¥80,000.00: not above the ¥100,000.00 threshold"


@pytest.mark.parametrize(
    ("gmv_minor", "amount_minor"),
    [
        (10_000_000 + 16_666, 50),  # 16,666 fen × 0.003 = 49.998 fen → 50
        (10_000_000 + 16_500, 50),  # 49.5 fen → 50 (half-up)
        (10_000_000 + 16_499, 49),  # 49.497 fen → 49
        (10_000_000 + 166, 0),  # 0.498 fen → 0
    ],
)
def test_gmv_fee_is_rounded_once_on_the_aggregate(gmv_minor: int, amount_minor: int) -> None:
    assert only_line(GMV_FEE, context(gmv_minor=gmv_minor)).amount_minor == amount_minor


def test_percentage_with_a_fixed_fee_per_transaction() -> None:
    charge = Percentage(
        code="processing", description="p", metric="orders", rate=D("0.006"), fixed_fee_minor=10
    )
    result = only_line(charge, context(orders=200, gmv_minor=1_000_000))
    # ¥10,000 × 0.6% = ¥60.00, + 200 × ¥0.10 = ¥20.00 → ¥80.00
    assert result.amount_minor == 8_000
    assert result.explanation == "GMV ¥10,000.00 × 0.60% + 200 transactions × ¥0.10"


def test_percentage_minimum_and_maximum_per_period() -> None:
    floor_and_cap = Percentage(
        code="gmv_fee", description="g", metric="orders", rate=D("0.003"),
        threshold_minor=10_000_000, minimum_minor=5_000, maximum_minor=50_000,
    )  # fmt: skip
    low = only_line(floor_and_cap, context(gmv_minor=8_000_000))
    assert low.amount_minor == 5_000  # nothing above threshold, raised to the ¥50.00 minimum
    assert low.explanation.endswith("; raised to the ¥50.00 minimum")
    high = only_line(floor_and_cap, context(gmv_minor=35_000_000))
    assert high.amount_minor == 50_000  # ¥750.00 capped at ¥500.00
    assert high.explanation.endswith("; capped at the ¥500.00 maximum")
    with pytest.raises(ValueError, match="must not exceed"):
        msgspec.structs.replace(floor_and_cap, minimum_minor=60_000)


def test_percentage_rate_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="rate must be a fraction"):
        Percentage(code="g", description="g", metric="orders", rate=D("3"))


# -- per hour ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "increment", "amount_minor"),
    [
        ("12.5", None, 37_500),  # 12.5 h × ¥30 = ¥375.00
        ("12.3", None, 36_900),  # 12.3 h × ¥30 = ¥369.00
        ("12.3", "0.5", 37_500),  # billed as 12.5 h
        ("12", "0.5", 36_000),  # already a whole step
        ("0.1", "0.5", 1_500),  # a started half hour: 0.5 h × ¥30 = ¥15.00
        ("0", "0.5", 0),
    ],
)
def test_per_hour(hours: str, increment: str | None, amount_minor: int) -> None:
    charge = PerHour(
        code="support_hours", description="Consultation", unit_price=D("30.00"),
        increment_hours=None if increment is None else D(increment),
    )  # fmt: skip
    assert only_line(charge, context(hours=hours)).amount_minor == amount_minor


def test_per_hour_explains_the_rounding_to_steps() -> None:
    charge = PerHour(code="h", description="c", unit_price=D("30"), increment_hours=D("0.5"))
    assert only_line(charge, context(hours="12.3")).explanation == (
        "12.3 hours, billed in 0.5-hour steps as 12.5 × ¥30.00"
    )


# -- surcharge, discount, minimum commitment --------------------------------------------------


def test_surcharge_is_a_share_of_the_fee_lines_only() -> None:
    fast = Surcharge(code="fast_response", description="Fast response", rate=D("0.40"))
    lines = (line("fee", 9_900), line("usage", 30_000, OCTOBER), line("addon", 100_000))
    result = only_line(fast, context(lines=lines))
    assert (result.kind, result.amount_minor) == ("addon", 3_960)  # 40% × ¥99.00 = ¥39.60
    assert result.explanation == "40% of the ¥99.00 fee for 2026-11"
    assert (result.period_start, result.period_end) == (NOVEMBER.start, NOVEMBER.end)


def test_surcharge_without_a_fee_is_not_billed() -> None:
    fast = Surcharge(code="fast_response", description="Fast response", rate=D("0.40"))
    assert fast.lines(context(lines=(line("usage", 30_000, OCTOBER),))) == []
    assert fast.lines(context(fee_period=None)) == []


def test_surcharge_rounds_half_up() -> None:
    standard = Surcharge(code="standard_response", description="s", rate=D("0.15"))
    # 15% × ¥99.99 = ¥14.9985 = 1,499.85 fen → 1,500
    assert only_line(standard, context(lines=(line("fee", 9_999),))).amount_minor == 1_500


def test_percentage_discount_takes_a_share_of_the_listed_kinds() -> None:
    byo = PercentageDiscount(code="byo", description="Bring your own", rate=D("0.20"))
    lines = (line("fee", 120_000), line("usage", 400_000, OCTOBER))
    result = only_line(byo, context(lines=lines))
    assert (result.kind, result.amount_minor) == ("discount", -24_000)  # −20% × ¥1,200
    assert result.explanation == "-20% of ¥1,200.00 (fee)"
    assert (result.period_start, result.period_end) == (NOVEMBER.start, NOVEMBER.end)
    wider = PercentageDiscount(
        code="promo", description="p", rate=D("0.10"), applies_to=("fee", "usage")
    )
    promo = only_line(wider, context(lines=lines))
    assert promo.amount_minor == -52_000  # −10% × (¥1,200 + ¥4,000)
    assert (promo.period_start, promo.period_end) == (OCTOBER.start, NOVEMBER.end)


def test_percentage_discount_of_nothing_is_no_line() -> None:
    byo = PercentageDiscount(code="byo", description="b", rate=D("0.20"))
    assert byo.lines(context(lines=(line("usage", 1_000, OCTOBER),))) == []


def test_discount_kinds_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown line kinds"):
        PercentageDiscount(code="b", description="b", rate=D("0.2"), applies_to=("tax",))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("usage_minor", "true_up_minor"),
    [
        (320_000, 180_000),  # ¥5,000 − ¥3,200 = ¥1,800.00
        (500_000, None),  # exactly met
        (600_000, None),  # exceeded
        (0, 500_000),  # no usage: the whole commitment
    ],
)
def test_minimum_commitment_trues_up_the_shortfall(
    usage_minor: int, true_up_minor: int | None
) -> None:
    commitment = MinimumCommitment(code="minimum", description="Minimum", amount_minor=500_000)
    lines = (line("fee", 120_000), line("usage", usage_minor, OCTOBER))
    result = commitment.lines(context(lines=lines))
    if true_up_minor is None:
        assert result == []
    else:
        assert [(r.kind, r.amount_minor) for r in result] == [("minimum_true_up", true_up_minor)]
        assert result[0].period_start == OCTOBER.start


def test_minimum_commitment_explanation() -> None:
    commitment = MinimumCommitment(code="minimum", description="Minimum", amount_minor=500_000)
    (result,) = commitment.lines(context(lines=(line("usage", 320_000, OCTOBER),)))
    assert result.explanation == (
        "minimum ¥5,000.00 for 2026-10, charges ¥3,200.00: true-up ¥1,800.00"
    )


# -- data shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": "per_unit", "code": "o", "description": "o", "metric": "orders",
          "unit_price": "-0.5"}, "unit_price must not be negative"),
        ({"model": "per_unit", "code": "o", "description": "o", "metric": "visits",
          "unit_price": "0.5"}, "Invalid enum value 'visits'"),
        ({"model": "package", "code": "o", "description": "o", "metric": "orders",
          "package_size": "0", "package_price": "1"}, "package_size must be positive"),
        ({"model": "flat_fee", "code": "f", "description": "f", "amount_minor": "99.00"},
         "Expected `int`, got `str`"),
        ({"model": "surcharge", "code": "s", "description": "s", "rate": "0.4", "extra": 1},
         "unknown field `extra`"),
    ],
)  # fmt: skip
def test_charges_validate_as_they_are_decoded(raw: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(raw, Charge)


def test_charges_round_trip_through_json_with_their_model_tag() -> None:
    encoded = msgspec.json.encode(GMV_FEE)
    assert b'"model":"percentage"' in encoded
    assert b'"rate":"0.003"' in encoded
    assert msgspec.json.decode(encoded, type=Charge) == GMV_FEE
