"""SLA credit policies applied to service reports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import msgspec
import pytest

from plans import FaultRecord, Period, SlaPolicy, SlaReport, sla_credit_lines
from plans.sla import CsatBelow, FaultUnresolvedOver, ResponsesOverSlaAbove

D = Decimal

POLICY = SlaPolicy(
    code="strict",
    version=1,
    max_credit_rate=D("0.50"),
    rules=(
        FaultUnresolvedOver(code="fault", description="Fault", hours=D(24), credit_rate=D("0.30")),
        CsatBelow(code="csat", description="CSAT", threshold=D("0.90"), credit_rate=D("0.10")),
        ResponsesOverSlaAbove(
            code="slow", description="Slow responses", threshold=D("0.05"), credit_rate=D("0.25")
        ),
    ),
)


def make_report(october: Period, **fields: object) -> SlaReport:
    return SlaReport(period_start=october.start, period_end=october.end, **fields)  # type: ignore[arg-type]


def test_each_breached_rule_credits_its_share(october: Period) -> None:
    report = make_report(october, share_over_sla=D("0.08"))
    (line,) = sla_credit_lines(report, POLICY, fee_base_minor=13_860, currency="CNY")
    # 25% × ¥138.60 = ¥34.65
    assert (line.charge_code, line.amount_minor, line.rate) == ("slow", -3_465, D("0.25"))
    assert line.explanation == (
        "8% of responses over the SLA time (more than 5%): 25% of the ¥138.60 fees for 2026-10"
    )


def test_credits_stop_at_the_policy_cap_and_round_cumulatively(october: Period) -> None:
    report = make_report(
        october,
        faults=(
            FaultRecord(reference="F-1", unresolved_hours=D("3")),
            FaultRecord(reference="F-2", unresolved_hours=D("26.5")),
        ),
        csat=D("0.70"),
        share_over_sla=D("0.5"),
    )
    lines = sla_credit_lines(report, POLICY, fee_base_minor=9_999, currency="CNY")
    # 30% × 9,999 = 2,999.7 → 3,000; +10% → 40% × 9,999 = 3,999.6 → 4,000 (line: 1,000)
    # +10% (of the 25%, up to the 50% cap) → 4,999.5 → 5,000 (line: 1,000)
    assert [(line.charge_code, line.amount_minor) for line in lines] == [
        ("fault", -3_000),
        ("csat", -1_000),
        ("slow", -1_000),
    ]
    assert lines[0].explanation.startswith("fault F-2 unresolved for 26.5 h (more than 24 h)")
    assert lines[2].rate == D("0.10")
    assert lines[2].explanation.endswith("(capped: credits stop at 50%)")


def test_a_prorated_period_is_credited_from_its_exact_share_rounded_once() -> None:
    # A first period of 1 d 0 h 20 min (87,600 of June's 2,592,000 s) paid ¥99 × that share,
    # exactly ¥3.3458…; 30% of it is ¥1.0037… → ¥1.00. Rounding the base first (¥3.35) would
    # credit ¥1.01.
    shanghai = ZoneInfo("Asia/Shanghai")
    report = SlaReport(
        period_start=datetime(2026, 6, 29, 23, 40, tzinfo=shanghai),
        period_end=datetime(2026, 7, 1, tzinfo=shanghai),
        faults=(FaultRecord(reference="F-1", unresolved_hours=D("30")),),
    )
    (line,) = sla_credit_lines(
        report,
        POLICY,
        fee_base_minor=9_900,
        currency="CNY",
        billed_share=Fraction(87_600, 2_592_000),
    )
    assert (line.charge_code, line.amount_minor) == ("fault", -100)
    assert line.quantity == D("3.35")  # the base as people read it
    assert line.explanation.endswith("30% of the ¥3.35 fees for 2026-06-29 – 2026-07-01")


def test_a_period_nothing_was_billed_for_earns_no_credit(october: Period) -> None:
    report = make_report(october, faults=(FaultRecord(reference="F", unresolved_hours=D(48)),))
    assert (
        sla_credit_lines(
            report, POLICY, fee_base_minor=9_900, currency="CNY", billed_share=Fraction(0)
        )
        == []
    )


def test_no_breach_or_no_fees_means_no_credit(october: Period) -> None:
    fine = make_report(
        october,
        faults=(FaultRecord(reference="F-1", unresolved_hours=D("24")),),
        csat=D("0.90"),
        share_over_sla=D("0.05"),
        first_response_seconds=D("240"),
        first_contact_resolution=D("0.8"),
    )
    assert sla_credit_lines(fine, POLICY, fee_base_minor=9_900, currency="CNY") == []
    breach = make_report(october, csat=D("0.5"))
    assert sla_credit_lines(breach, POLICY, fee_base_minor=0, currency="CNY") == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"csat": D("1.2")}, "csat must be a fraction"),
        ({"share_over_sla": D("-0.1")}, "share_over_sla must be a fraction"),
        (
            {"faults": (FaultRecord(reference="F", unresolved_hours=D("1")),), "csat": D("90")},
            "csat",
        ),
    ],
)
def test_reports_are_validated(october: Period, fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_report(october, **fields)


def test_reports_decode_from_json(october: Period) -> None:
    raw = (
        b'{"period_start":"2026-10-01T00:00:00+08:00","period_end":"2026-11-01T00:00:00+08:00",'
        b'"faults":[{"reference":"F-9","unresolved_hours":"30"}],"csat":"0.95"}'
    )
    report = msgspec.json.decode(raw, type=SlaReport)
    assert report.period == october
    assert report.faults[0].unresolved_hours == D(30)


def test_policy_rule_codes_are_unique() -> None:
    rule = CsatBelow(code="csat", description="c", threshold=D("0.9"), credit_rate=D("0.1"))
    with pytest.raises(ValueError, match="unique"):
        SlaPolicy(code="p", version=1, rules=(rule, rule))
