"""Properties that must hold for any usage, price and period (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from plans import (
    InvoiceLine,
    LateUsage,
    Period,
    SlaReport,
    UsageAggregate,
    allocate,
    anniversary_period_containing,
    calendar_period_containing,
    load_catalog,
    next_anniversary_period,
    next_calendar_period,
    prorated_amount,
    rate,
)
from plans.charges import (
    Graduated,
    Package,
    Percentage,
    PerHour,
    PerUnit,
    RatingContext,
    Tier,
    UsageCharge,
)
from plans.lines import CHARGE_KINDS, CREDIT_KINDS, DISCOUNT_KINDS
from plans.sla import FaultRecord

CATALOG = load_catalog()
SHANGHAI = ZoneInfo("Asia/Shanghai")
OCTOBER = Period(datetime(2026, 10, 1, tzinfo=SHANGHAI), datetime(2026, 11, 1, tzinfo=SHANGHAI))
NOVEMBER = Period(datetime(2026, 11, 1, tzinfo=SHANGHAI), datetime(2026, 12, 1, tzinfo=SHANGHAI))
SEPTEMBER = Period(datetime(2026, 9, 1, tzinfo=SHANGHAI), OCTOBER.start)
STEPS = ["0.25", "0.5", "1"]
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]

order_counts = st.integers(min_value=0, max_value=500_000)
gmv = st.integers(min_value=0, max_value=10**11)
hours = st.decimals(min_value=0, max_value=500, places=2)
prices = st.decimals(min_value=0, max_value=50, places=4)
rates = st.decimals(min_value=0, max_value=1, places=5)


@st.composite
def usages(draw: st.DrawFn) -> dict[str, UsageAggregate]:
    count = draw(order_counts)
    return {
        "orders": UsageAggregate(count=count, quantity=Decimal(count), gmv_minor=draw(gmv)),
        "support_hours": UsageAggregate(count=1, quantity=draw(hours)),
    }


@st.composite
def plans_with_addons(draw: st.DrawFn) -> tuple[str, list[str]]:
    plan = CATALOG.latest(draw(st.sampled_from(CATALOG.codes())))
    chosen: list[str] = []
    groups: set[str] = set()
    for addon in draw(st.permutations(plan.addons)):
        if draw(st.booleans()) and addon.exclusive_group not in groups:
            chosen.append(addon.code)
            if addon.exclusive_group:
                groups.add(addon.exclusive_group)
    return plan.code, chosen


def context() -> RatingContext:
    return RatingContext("CNY", 2, OCTOBER, NOVEMBER, {})


def usage_amount(charge: UsageCharge, quantity: Decimal, gmv_minor: int = 0) -> int:
    usage = UsageAggregate(count=int(quantity), quantity=quantity, gmv_minor=gmv_minor)
    return charge.usage_line(context(), usage, OCTOBER).amount_minor


# -- invoices ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    plan_and_addons=plans_with_addons(),
    usage=usages(),
    late_after=usages(),
    tax_rate=st.decimals(min_value=0, max_value=Decimal("0.25"), places=4),
    balance=st.integers(min_value=0, max_value=10**7),
    pending=st.lists(st.integers(min_value=-(10**6), max_value=10**6), max_size=3),
    fault_hours=st.one_of(st.none(), st.decimals(min_value=0, max_value=72, places=1)),
    csat=st.one_of(st.none(), st.decimals(min_value=0, max_value=1, places=3)),
    has_fee_period=st.booleans(),
)
def test_lines_sum_to_the_totals_and_the_total_is_never_negative(
    plan_and_addons: tuple[str, list[str]],
    usage: dict[str, UsageAggregate],
    late_after: dict[str, UsageAggregate],
    tax_rate: Decimal,
    balance: int,
    pending: list[int],
    fault_hours: Decimal | None,
    csat: Decimal | None,
    has_fee_period: bool,
) -> None:
    code, addons = plan_and_addons
    faults = (
        () if fault_hours is None else (FaultRecord(reference="F", unresolved_hours=fault_hours),)
    )
    pending_lines = [
        InvoiceLine(
            kind="proration",
            charge_code="monthly_fee",
            description="p",
            quantity=Decimal(1),
            amount_minor=amount,
            currency="CNY",
            period_start=OCTOBER.start,
            period_end=OCTOBER.end,
            explanation="",
        )
        for amount in pending
    ]
    draft = rate(
        CATALOG.latest(code),
        addons=addons,
        usage_period=OCTOBER,
        fee_period=NOVEMBER if has_fee_period else None,
        aggregates=usage,
        sla_report=SlaReport(
            period_start=OCTOBER.start, period_end=OCTOBER.end, faults=faults, csat=csat
        ),
        tax_rate=tax_rate,
        pending_lines=pending_lines,
        late_usage=[
            LateUsage(
                period_start=SEPTEMBER.start,
                period_end=SEPTEMBER.end,
                aggregates_before=usage,
                aggregates_after=late_after,
            )
        ],
        credit_balance_minor=balance,
    )
    amounts = [line.amount_minor for line in draft.lines]
    assert draft.subtotal_minor == sum(
        line.amount_minor for line in draft.lines if line.kind in CHARGE_KINDS
    )
    assert draft.discounts_minor == sum(
        line.amount_minor for line in draft.lines if line.kind in DISCOUNT_KINDS
    )
    assert draft.credits_minor == sum(
        line.amount_minor for line in draft.lines if line.kind in CREDIT_KINDS
    )
    assert sum(amounts) == draft.subtotal_minor + draft.discounts_minor + draft.credits_minor
    assert sum(amounts) == draft.taxable_minor >= 0
    assert draft.total_minor == draft.taxable_minor + draft.tax_minor >= 0
    assert abs(draft.tax_minor - Fraction(draft.taxable_minor) * Fraction(tax_rate)) <= Fraction(
        1, 2
    )
    assert draft.discounts_minor <= 0
    carried_in = sum(
        line.amount_minor
        for line in draft.lines
        if line.charge_code == "credit_balance_carried_forward"
    )
    assert draft.credit_balance_carried_forward_minor == (
        balance + carried_in - draft.credit_balance_applied_minor
    )
    assert 0 <= draft.credit_balance_applied_minor <= balance
    assert all(line.currency == "CNY" for line in draft.lines)


@settings(max_examples=200, deadline=None)
@given(
    plan_and_addons=plans_with_addons(),
    usage=usages(),
    more_orders=order_counts,
    more_gmv=gmv,
    more_hours=hours,
)
def test_charges_never_decrease_when_usage_grows(
    plan_and_addons: tuple[str, list[str]],
    usage: dict[str, UsageAggregate],
    more_orders: int,
    more_gmv: int,
    more_hours: Decimal,
) -> None:
    code, addons = plan_and_addons
    orders, support = usage["orders"], usage["support_hours"]
    grown = {
        "orders": UsageAggregate(
            count=orders.count + more_orders,
            quantity=orders.quantity + more_orders,
            gmv_minor=orders.gmv_minor + more_gmv,
        ),
        "support_hours": UsageAggregate(count=1, quantity=support.quantity + more_hours),
    }

    def cost(aggregates: dict[str, UsageAggregate]) -> int:
        plan = CATALOG.latest(code)
        return rate(
            plan, addons=addons, usage_period=OCTOBER, fee_period=NOVEMBER, aggregates=aggregates
        ).total_minor

    assert cost(grown) >= cost(usage)


@st.composite
def tier_lists(draw: st.DrawFn, whole_fen: bool = False) -> tuple[Tier, ...]:
    edges = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=100_000), min_size=0, max_size=4))
    )
    price = (
        st.integers(min_value=0, max_value=500).map(lambda fen: Decimal(fen).scaleb(-2))
        if whole_fen
        else prices
    )
    return tuple(
        Tier(up_to=Decimal(edge) if edge is not None else None, unit_price=draw(price))
        for edge in [*edges, None]
    )


@st.composite
def monotone_charges(draw: st.DrawFn) -> UsageCharge:
    """Every usage model but volume, whose price per unit drops at tier edges by design."""
    kind = draw(st.sampled_from(["per_unit", "graduated", "package", "percentage", "per_hour"]))
    if kind == "per_unit":
        return PerUnit(
            code="c", description="c", metric="orders", unit_price=draw(prices),
            included_units=Decimal(draw(st.integers(0, 10_000))),
        )  # fmt: skip
    if kind == "graduated":
        return Graduated(code="c", description="c", metric="orders", tiers=draw(tier_lists()))
    if kind == "package":
        return Package(
            code="c", description="c", metric="orders",
            package_size=Decimal(draw(st.integers(1, 5_000))), package_price=draw(prices),
        )  # fmt: skip
    if kind == "percentage":
        minimum = draw(st.one_of(st.none(), st.integers(0, 10**6)))
        maximum = draw(st.one_of(st.none(), st.integers(minimum or 0, 10**8)))
        return Percentage(
            code="c", description="c", metric="orders", rate=draw(rates),
            threshold_minor=draw(st.integers(0, 10**8)), fixed_fee_minor=draw(st.integers(0, 100)),
            minimum_minor=minimum, maximum_minor=maximum,
        )  # fmt: skip
    return PerHour(
        code="c", description="c", unit_price=draw(prices),
        increment_hours=draw(st.one_of(st.none(), st.sampled_from(STEPS).map(Decimal))),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    charge=monotone_charges(),
    quantity=st.integers(0, 200_000),
    extra=st.integers(0, 200_000),
    gmv_minor=gmv,
    extra_gmv=gmv,
)
def test_each_usage_model_is_monotone(
    charge: UsageCharge, quantity: int, extra: int, gmv_minor: int, extra_gmv: int
) -> None:
    before = usage_amount(charge, Decimal(quantity), gmv_minor)
    after = usage_amount(charge, Decimal(quantity + extra), gmv_minor + extra_gmv)
    assert after >= before


@settings(max_examples=200, deadline=None)
@given(tiers=tier_lists(whole_fen=True))
def test_graduated_pricing_is_continuous_at_tier_edges(tiers: tuple[Tier, ...]) -> None:
    charge = Graduated(code="c", description="c", metric="orders", tiers=tiers)
    for index, tier in enumerate(tiers[:-1]):
        assert tier.up_to is not None
        edge = tier.up_to
        at_edge = usage_amount(charge, edge)
        # the last unit of a tier costs that tier's price, the next unit the next tier's price:
        # no jump at the edge (prices are whole fen, so every amount here is exact)
        assert at_edge - usage_amount(charge, edge - 1) == tier.unit_price * 100
        assert usage_amount(charge, edge + 1) - at_edge == tiers[index + 1].unit_price * 100
        # and half a unit either side of the edge meets in the middle
        below = usage_amount(charge, edge - Decimal("0.5"))
        above = usage_amount(charge, edge + Decimal("0.5"))
        assert abs((at_edge - below) - tier.unit_price * 50) <= 1
        assert abs((above - at_edge) - tiers[index + 1].unit_price * 50) <= 1


def _exact_graduated(tiers: tuple[Tier, ...], quantity: Decimal) -> Fraction:
    total, lower = Fraction(0), Fraction(0)
    for tier in tiers:
        upper = (
            Fraction(quantity)
            if tier.up_to is None
            else min(Fraction(quantity), Fraction(tier.up_to))
        )
        if upper > lower:
            total += (upper - lower) * Fraction(tier.unit_price) * 100
            lower = upper
    return total


@settings(max_examples=300, deadline=None)
@given(
    unit_price=prices,
    included=st.integers(0, 5_000),
    quantity=st.decimals(min_value=0, max_value=10**6, places=3),
    tiers=tier_lists(),
    rate_=rates,
    threshold=st.integers(0, 10**8),
    gmv_minor=gmv,
)
def test_each_line_is_within_half_a_minor_unit_of_the_exact_amount(
    unit_price: Decimal,
    included: int,
    quantity: Decimal,
    tiers: tuple[Tier, ...],
    rate_: Decimal,
    threshold: int,
    gmv_minor: int,
) -> None:
    half = Fraction(1, 2)
    per_unit = PerUnit(
        code="c", description="c", metric="orders", unit_price=unit_price,
        included_units=Decimal(included),
    )  # fmt: skip
    exact = max(Fraction(0), Fraction(quantity) - included) * Fraction(unit_price) * 100
    assert abs(usage_amount(per_unit, quantity) - exact) <= half

    graduated = Graduated(code="c", description="c", metric="orders", tiers=tiers)
    assert abs(usage_amount(graduated, quantity) - _exact_graduated(tiers, quantity)) <= half

    percentage = Percentage(
        code="c", description="c", metric="orders", rate=rate_, threshold_minor=threshold
    )
    exact = max(0, gmv_minor - threshold) * Fraction(rate_)
    assert abs(usage_amount(percentage, Decimal(0), gmv_minor) - exact) <= half

    per_hour = PerHour(code="c", description="c", unit_price=unit_price)
    exact = Fraction(quantity) * Fraction(unit_price) * 100
    assert abs(usage_amount(per_hour, quantity) - exact) <= half


# -- proration, allocation, periods -----------------------------------------------------------

months = st.tuples(st.integers(2020, 2035), st.integers(1, 12), st.sampled_from(ZONES)).map(
    lambda ymz: calendar_period_containing(
        datetime(ymz[0], ymz[1], 15, tzinfo=ZoneInfo(ymz[2])), ymz[2]
    )
)


@settings(max_examples=200, deadline=None)
@given(period=months, fee=st.integers(-(10**9), 10**9))
def test_proration_of_a_full_period_is_the_full_fee(period: Period, fee: int) -> None:
    assert prorated_amount(fee, period, period.start, period.end) == fee


@settings(max_examples=200, deadline=None)
@given(period=months, fee=st.integers(0, 10**9), share=st.fractions(min_value=0, max_value=1))
def test_proration_of_two_halves_sums_to_the_whole(
    period: Period, fee: int, share: Fraction
) -> None:
    # add real seconds in UTC: wall-clock addition would overshoot a DST month
    split = period.start.astimezone(UTC) + timedelta(seconds=int(period.seconds * share))
    first = prorated_amount(fee, period, period.start, split)
    second = prorated_amount(fee, period, split, period.end)
    assert abs(first + second - fee) <= 1  # each half within half a fen of its exact share
    exact_first = Fraction(fee) * period.fraction(period.start, split)
    assert abs(first - exact_first) <= Fraction(1, 2)


@settings(max_examples=200, deadline=None)
@given(period=months, fee=st.integers(0, 10**9))
def test_proration_of_the_two_halves_of_a_period_sums_to_the_whole(
    period: Period, fee: int
) -> None:
    middle = period.start.astimezone(UTC) + period.duration / 2
    first = prorated_amount(fee, period, period.start, middle)
    second = prorated_amount(fee, period, middle, period.end)
    assert abs(first + second - fee) <= 1  # what the issue asks
    assert first == second  # the same share of the same amount rounds the same way


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(-(10**9), 10**9),
    weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=12).filter(any),
)
def test_allocation_never_loses_a_minor_unit(amount: int, weights: list[int]) -> None:
    parts = allocate(amount, weights)
    assert sum(parts) == amount
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part - Fraction(amount * weight, total)) < 1


instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(instant=instants, anchor=instants, zone_name=st.sampled_from(ZONES))
def test_periods_contain_their_instant_and_follow_each_other(
    instant: datetime, anchor: datetime, zone_name: str
) -> None:
    calendar = calendar_period_containing(instant, zone_name)
    assert calendar.contains(instant)
    assert next_calendar_period(calendar, zone_name).start == calendar.end
    assert calendar.is_calendar_month
    anniversary = anniversary_period_containing(instant, anchor, zone_name)
    assert anniversary.contains(instant)
    following = next_anniversary_period(anniversary, anchor, zone_name)
    assert following.start == anniversary.end
    assert 27 * 86_400 <= anniversary.seconds <= 32 * 86_400
