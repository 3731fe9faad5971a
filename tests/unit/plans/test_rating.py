"""Rating whole invoices under the shipped catalog, with the arithmetic worked by hand."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
import pytest

from plans import (
    Catalog,
    CurrencyMismatchError,
    FaultRecord,
    InvoiceDraft,
    InvoiceLine,
    LateUsage,
    Period,
    SlaReport,
    UsageAggregate,
    rate,
)

D = Decimal


def orders(count: int, gmv_minor: int = 0) -> dict[str, UsageAggregate]:
    return {"orders": UsageAggregate(count=count, quantity=D(count), gmv_minor=gmv_minor)}


def by_code(draft: InvoiceDraft) -> dict[str, InvoiceLine]:
    return {line.charge_code: line for line in draft.lines}


def test_custom_merchant_with_350k_gmv_and_20k_orders(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("custom"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(20_000, gmv_minor=35_000_000),
        tax_rate=D("0.06"),
    )
    lines = by_code(draft)
    assert lines["monthly_fee"].amount_minor == 120_000  # ¥1,200.00 for November, in advance
    assert lines["orders"].amount_minor == 400_000  # 20,000 × ¥0.20 = ¥4,000.00
    assert lines["gmv_fee"].amount_minor == 75_000  # (¥350,000 − ¥100,000) × 0.30% = ¥750.00
    assert lines["support_hours"].amount_minor == 0  # no consultation hours
    assert "minimum_commitment" not in lines  # contract default: no commitment
    assert draft.subtotal_minor == 595_000  # ¥1,200 + ¥4,000 + ¥750 = ¥5,950.00
    assert draft.tax_minor == 35_700  # 6% × ¥5,950.00 = ¥357.00
    assert draft.total_minor == 630_700  # ¥6,307.00
    assert lines["monthly_fee"].period_start == november.start
    assert lines["gmv_fee"].period_start == october.start
    assert lines["orders"].explanation == "20,000 orders × ¥0.20"
    assert lines["gmv_fee"].explanation == (
        "GMV ¥350,000.00: ¥250,000.00 above the ¥100,000.00 threshold × 0.30%"
    )


def test_basic_merchant_with_3600_orders_and_fast_response(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("basic"),
        addons=["fast_response"],
        usage_period=october,
        fee_period=november,
        aggregates=orders(3_600),
    )
    assert [(line.kind, line.charge_code, line.amount_minor) for line in draft.lines] == [
        ("fee", "monthly_fee", 9_900),  # ¥99.00
        ("usage", "orders", 30_000),  # (3,600 − 3,000) × ¥0.50 = ¥300.00
        ("addon", "fast_response", 3_960),  # 40% × ¥99.00 = ¥39.60
    ]
    assert draft.total_minor == 43_860  # ¥99 + ¥300 + ¥39.60 = ¥438.60, no tax
    assert by_code(draft)["orders"].explanation == "3,600 orders: 3,000 included, 600 × ¥0.50"


def test_advanced_explanation_from_the_issue(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("advanced"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(15_600),
    )
    line = by_code(draft)["orders"]
    assert line.explanation == "15,600 orders: 15,000 included, 600 × ¥0.30"
    assert (line.quantity, line.unit_price, line.amount_minor) == (D(600), D("0.30"), 18_000)


def test_surcharges_add_up_instead_of_compounding(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("basic"),
        addons=["fast_response", "complexity"],
        usage_period=october,
        fee_period=november,
        aggregates=orders(0),
    )
    lines = by_code(draft)
    assert lines["fast_response"].amount_minor == 3_960  # 40% × ¥99 = ¥39.60
    assert lines["complexity"].amount_minor == 2_475  # 25% × ¥99 = ¥24.75, not of ¥138.60
    assert draft.total_minor == 9_900 + 3_960 + 2_475


def test_discount_then_tax_on_the_discounted_amount(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("custom"),
        addons=["bring_your_own_system"],
        usage_period=october,
        fee_period=november,
        aggregates=orders(20_000, gmv_minor=35_000_000),
        tax_rate=D("0.06"),
    )
    assert by_code(draft)["bring_your_own_system"].amount_minor == -24_000  # −20% × ¥1,200
    assert draft.subtotal_minor == 595_000
    assert draft.discounts_minor == -24_000
    assert draft.taxable_minor == 571_000  # ¥5,950 − ¥240 = ¥5,710.00
    assert draft.tax_minor == 34_260  # 6% × ¥5,710.00 = ¥342.60
    assert draft.total_minor == 605_260


def test_tax_is_rounded_half_up_once(catalog: Catalog, october: Period, november: Period) -> None:
    draft = rate(
        catalog.latest("basic"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(0),
        tax_rate=D("0.0625"),
    )
    assert draft.tax_minor == 619  # 6.25% × 9,900 fen = 618.75 → 619
    assert draft.total_minor == 10_519


def test_final_invoice_without_a_fee_period_bills_usage_only(
    catalog: Catalog, october: Period
) -> None:
    draft = rate(
        catalog.latest("basic"),
        addons=["fast_response"],
        usage_period=october,
        aggregates=orders(3_100),
    )
    assert [(line.charge_code, line.amount_minor) for line in draft.lines] == [("orders", 5_000)]


def test_missing_metrics_rate_as_zero_usage(catalog: Catalog, october: Period) -> None:
    draft = rate(catalog.latest("custom"), usage_period=october, aggregates={})
    assert {line.charge_code: line.amount_minor for line in draft.lines} == {
        "orders": 0,
        "gmv_fee": 0,
        "support_hours": 0,
    }
    assert draft.total_minor == 0


# -- SLA credits ------------------------------------------------------------------------------


def report(period: Period, *, fault_hours: str | None = None, csat: str | None = None) -> SlaReport:
    faults = (
        ()
        if fault_hours is None
        else (FaultRecord(reference="F-7", unresolved_hours=D(fault_hours)),)
    )
    return SlaReport(
        period_start=period.start,
        period_end=period.end,
        faults=faults,
        csat=None if csat is None else D(csat),
    )


@pytest.mark.parametrize(
    ("fault_hours", "csat", "credits"),
    [
        ("30", None, [-13_860]),  # 100% of (¥99 + ¥39.60) for October
        (None, "0.85", [-1_386]),  # 10% × ¥138.60 = ¥13.86
        ("30", "0.85", [-13_860]),  # both: capped at 100%, the CSAT rule adds nothing
        ("24", "0.90", []),  # exactly 24 h and exactly 90% are within the SLA
        ("24.01", "0.8999", [-13_860]),  # only the fault counts once capped
    ],
)
def test_sla_credits_are_a_share_of_the_periods_fees(
    catalog: Catalog,
    october: Period,
    november: Period,
    fault_hours: str | None,
    csat: str | None,
    credits: list[int],
) -> None:
    draft = rate(
        catalog.latest("basic"),
        addons=["fast_response"],
        usage_period=october,
        fee_period=november,
        aggregates=orders(3_600),
        sla_report=report(october, fault_hours=fault_hours, csat=csat),
    )
    sla_lines = [line for line in draft.lines if line.charge_code.startswith("sla_")]
    assert [line.amount_minor for line in sla_lines] == credits
    for line in sla_lines:
        assert line.kind == "credit"
        assert (line.period_start, line.period_end) == (october.start, october.end)
    # fee ¥99 + usage ¥300 + fast ¥39.60 = ¥438.60, less the credits
    assert draft.total_minor == 43_860 + sum(credits)


def test_sla_credit_base_is_net_of_the_fee_discount(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("custom"),
        addons=["bring_your_own_system"],
        usage_period=october,
        fee_period=november,
        aggregates=orders(20_000, gmv_minor=35_000_000),
        sla_report=report(october, csat="0.80"),
    )
    credit = by_code(draft)["sla_csat_below_target"]
    # base: ¥1,200 − 20% = ¥960.00 paid for October's service; 10% = ¥96.00
    assert credit.amount_minor == -9_600
    assert credit.explanation == ("CSAT 80% below 90%: 10% of the ¥960.00 fees for 2026-10")


def test_credits_beyond_the_invoice_carry_forward(catalog: Catalog, october: Period) -> None:
    # final invoice: no fee in advance, usage within the allowance, and a fault credit
    draft = rate(
        catalog.latest("basic"),
        usage_period=october,
        aggregates=orders(1_000),
        sla_report=report(october, fault_hours="48"),
        credit_balance_minor=500,
        tax_rate=D("0.06"),
    )
    lines = by_code(draft)
    assert lines["sla_fault_unresolved"].amount_minor == -9_900  # October's ¥99 fee back
    assert lines["credit_balance_carried_forward"].amount_minor == 9_900
    assert draft.total_minor == 0
    assert draft.tax_minor == 0
    assert draft.credit_balance_carried_forward_minor == 10_400  # ¥5.00 in + ¥99.00 new


def test_credit_balance_is_applied_before_tax(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("basic"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(3_600),
        credit_balance_minor=5_000,
        tax_rate=D("0.10"),
    )
    assert by_code(draft)["credit_balance_applied"].amount_minor == -5_000
    assert draft.taxable_minor == 34_900  # ¥99 + ¥300 − ¥50 = ¥349.00
    assert draft.tax_minor == 3_490
    assert draft.total_minor == 38_390
    assert draft.credit_balance_applied_minor == 5_000
    assert draft.credit_balance_carried_forward_minor == 0


def test_a_large_balance_pays_the_whole_invoice(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("basic"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(3_600),
        credit_balance_minor=100_000,
    )
    assert draft.total_minor == 0
    assert draft.credit_balance_applied_minor == 39_900
    assert draft.credit_balance_carried_forward_minor == 60_100  # ¥1,000 − ¥399


# -- pending lines and late usage -------------------------------------------------------------


def test_pending_lines_pass_through_into_the_totals(
    catalog: Catalog, october: Period, november: Period
) -> None:
    proration = InvoiceLine(
        kind="proration",
        charge_code="monthly_fee",
        description="Advanced fee, remaining time",
        quantity=D("0.5"),
        amount_minor=15_000,
        currency="CNY",
        period_start=datetime(2026, 10, 16, 12, tzinfo=october.start.tzinfo),
        period_end=october.end,
        explanation="",
    )
    draft = rate(
        catalog.latest("advanced"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(0),
        pending_lines=[proration],
    )
    assert proration in draft.lines
    assert draft.subtotal_minor == 30_000 + 15_000


def test_other_currencies_are_refused(catalog: Catalog, october: Period) -> None:
    usd_orders = {"orders": UsageAggregate(count=1, quantity=D(1), gmv_minor=100, currency="USD")}
    with pytest.raises(CurrencyMismatchError, match=r"CNY.*USD"):
        rate(catalog.latest("custom"), usage_period=october, aggregates=usd_orders)
    usd_line = InvoiceLine(
        kind="proration",
        charge_code="x",
        description="x",
        quantity=D(1),
        amount_minor=1,
        currency="USD",
        period_start=october.start,
        period_end=october.end,
        explanation="",
    )
    with pytest.raises(CurrencyMismatchError):
        rate(
            catalog.latest("custom"), usage_period=october, aggregates={}, pending_lines=[usd_line]
        )


def test_late_usage_is_billed_as_an_adjustment_for_its_own_period(
    catalog: Catalog, september: Period, october: Period, november: Period
) -> None:
    late = LateUsage(
        period_start=september.start,
        period_end=september.end,
        aggregates_before=orders(15_600),
        aggregates_after=orders(15_720),
    )
    draft = rate(
        catalog.latest("advanced"),
        usage_period=october,
        fee_period=november,
        aggregates=orders(10_000),
        late_usage=[late],
    )
    adjustment = [line for line in draft.lines if line.kind == "adjustment"]
    assert len(adjustment) == 1
    line = adjustment[0]
    # before: 600 × ¥0.30 = ¥180.00; after: 720 × ¥0.30 = ¥216.00; difference ¥36.00
    assert (line.charge_code, line.amount_minor, line.quantity) == ("orders", 3_600, D(120))
    assert (line.period_start, line.period_end) == (september.start, september.end)
    assert line.explanation == "Late usage for 2026-09: +120 orders; ¥180.00 → ¥216.00"
    assert draft.total_minor == 30_000 + 0 + 3_600  # fee + October usage (within 15,000) + late


def test_late_gmv_on_custom_and_late_usage_within_the_allowance(
    catalog: Catalog, september: Period, october: Period
) -> None:
    late = LateUsage(
        period_start=september.start,
        period_end=september.end,
        aggregates_before=orders(20_000, gmv_minor=35_000_000),
        aggregates_after=orders(20_050, gmv_minor=37_000_000),
    )
    draft = rate(catalog.latest("custom"), usage_period=october, aggregates={}, late_usage=[late])
    adjustments = {line.charge_code: line for line in draft.lines if line.kind == "adjustment"}
    assert adjustments["orders"].amount_minor == 1_000  # 50 × ¥0.20 = ¥10.00
    assert adjustments["gmv_fee"].amount_minor == 6_000  # ¥20,000 more GMV × 0.30% = ¥60.00
    assert adjustments["gmv_fee"].explanation.startswith(
        "Late usage for 2026-09: +50 orders, +¥20,000.00 GMV"
    )
    within = LateUsage(
        period_start=september.start,
        period_end=september.end,
        aggregates_before=orders(2_000),
        aggregates_after=orders(2_500),
    )
    basic = rate(catalog.latest("basic"), usage_period=october, aggregates={}, late_usage=[within])
    assert [line for line in basic.lines if line.kind == "adjustment"] == []


def test_negative_tax_and_balance_are_refused(catalog: Catalog, october: Period) -> None:
    with pytest.raises(ValueError, match="tax_rate"):
        rate(catalog.latest("basic"), usage_period=october, aggregates={}, tax_rate=D("-0.1"))
    with pytest.raises(ValueError, match="credit_balance_minor"):
        rate(catalog.latest("basic"), usage_period=october, aggregates={}, credit_balance_minor=-1)


def test_drafts_serialise_to_json_for_the_service(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("basic"), usage_period=october, fee_period=november, aggregates=orders(3_600)
    )
    decoded = msgspec.json.decode(msgspec.json.encode(draft))
    assert decoded["total_minor"] == 39_900
    assert decoded["lines"][1]["unit_price"] == "0.50"
    assert decoded["lines"][1]["period_start"] == "2026-10-01T00:00:00+08:00"
    assert msgspec.json.decode(msgspec.json.encode(draft), type=InvoiceDraft) == draft
