"""SLA credits: a period's service report, judged by the catalog's policy, into credit lines.

The credit base is "that period's fees": what the merchant pays in advance for the reported
period under its terms — recurring fee + add-on fees + surcharges, net of percentage
discounts on those (a merchant never gets back more than it paid). Usage charges are not in
the base. `plans.rating` computes the base; this module applies the policy to it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Final

import msgspec

from plans.lines import InvoiceLine
from plans.money import exponent, format_minor, format_rate, round_half_up
from plans.periods import Period

__all__ = [
    "CsatBelow",
    "FaultRecord",
    "FaultUnresolvedOver",
    "ResponsesOverSlaAbove",
    "SlaPolicy",
    "SlaReport",
    "SlaRule",
    "sla_credit_lines",
]

_ONE: Final = Decimal(1)
_WHOLE: Final = Fraction(1)


def _check_fraction(name: str, value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and 0 <= value <= 1):
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")


class FaultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A technical fault in the period and how long it stayed unresolved, in hours."""

    reference: str
    unresolved_hours: Decimal

    def __post_init__(self) -> None:
        if self.unresolved_hours < 0:
            raise ValueError(f"unresolved_hours must not be negative, got {self.unresolved_hours}")


class SlaReport(msgspec.Struct, frozen=True, kw_only=True):
    """Service quality of one period, measured by the service.

    ``csat``, ``first_contact_resolution`` and ``share_over_sla`` are fractions (0.875 is
    87.5%); ``first_response_seconds`` is the period's median first response time.
    """

    period_start: datetime
    period_end: datetime
    faults: tuple[FaultRecord, ...] = ()
    csat: Decimal | None = None
    first_response_seconds: Decimal | None = None
    first_contact_resolution: Decimal | None = None
    share_over_sla: Decimal | None = None

    def __post_init__(self) -> None:
        _check_fraction("csat", self.csat)
        _check_fraction("first_contact_resolution", self.first_contact_resolution)
        _check_fraction("share_over_sla", self.share_over_sla)
        _ = self.period  # raises unless both ends are aware and the end is after the start

    @property
    def period(self) -> Period:
        return Period(self.period_start, self.period_end)


class _RuleBase(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="condition", forbid_unknown_fields=True
):
    code: str
    description: str
    credit_rate: Decimal

    def __post_init__(self) -> None:
        _check_fraction("credit_rate", self.credit_rate)

    def breach(self, report: SlaReport) -> str | None:  # pragma: no cover - overridden
        """Why the report breaches this rule, or None."""
        raise NotImplementedError


class FaultUnresolvedOver(_RuleBase, tag="fault_unresolved_over", frozen=True, kw_only=True):
    """Credit when any fault stayed unresolved for more than ``hours``."""

    hours: Decimal

    def breach(self, report: SlaReport) -> str | None:
        worst = max(report.faults, key=lambda fault: fault.unresolved_hours, default=None)
        if worst is None or worst.unresolved_hours <= self.hours:
            return None
        return (
            f"fault {worst.reference} unresolved for {worst.unresolved_hours.normalize():f} h "
            f"(more than {self.hours.normalize():f} h)"
        )


class CsatBelow(_RuleBase, tag="csat_below", frozen=True, kw_only=True):
    """Credit when customer satisfaction is below ``threshold``."""

    threshold: Decimal

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("threshold", self.threshold)

    def breach(self, report: SlaReport) -> str | None:
        if report.csat is None or report.csat >= self.threshold:
            return None
        return f"CSAT {format_rate(report.csat)} below {format_rate(self.threshold)}"


class ResponsesOverSlaAbove(_RuleBase, tag="responses_over_sla_above", frozen=True, kw_only=True):
    """Credit when the share of responses slower than the SLA time exceeds ``threshold``."""

    threshold: Decimal

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("threshold", self.threshold)

    def breach(self, report: SlaReport) -> str | None:
        if report.share_over_sla is None or report.share_over_sla <= self.threshold:
            return None
        return (
            f"{format_rate(report.share_over_sla)} of responses over the SLA time "
            f"(more than {format_rate(self.threshold)})"
        )


SlaRule = FaultUnresolvedOver | CsatBelow | ResponsesOverSlaAbove


class SlaPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A versioned credit policy: rules applied in order, all credits capped at one share."""

    code: str
    version: int
    rules: tuple[SlaRule, ...]
    max_credit_rate: Decimal = _ONE

    def __post_init__(self) -> None:
        _check_fraction("max_credit_rate", self.max_credit_rate)
        codes = [rule.code for rule in self.rules]
        if len(set(codes)) != len(codes):
            raise ValueError(f"rule codes must be unique, got {codes}")


def sla_credit_lines(
    report: SlaReport,
    policy: SlaPolicy,
    *,
    fee_base_minor: int,
    currency: str,
    billed_share: Fraction = _WHOLE,
) -> list[InvoiceLine]:
    """Credit lines (negative amounts) for each rule the report breaches.

    ``fee_base_minor`` is what the terms bill in advance for a whole period and
    ``billed_share`` the share of it billed for the reported period (a first period that
    starts mid-month, a last one cut short; 0 for a trial): the base is their exact product,
    never rounded before it is used. Rates add up in rule order and stop at
    ``max_credit_rate``. Each line is the rounded cumulative credit minus the rounded
    cumulative credit before it, so the lines always sum to exactly round(base × total rate).
    """
    base = fee_base_minor * billed_share
    if base <= 0:
        return []
    period = report.period
    shown_base_minor = round_half_up(base)  # for people: the quantity and the explanation
    lines: list[InvoiceLine] = []
    applied_rate = Decimal(0)
    credited_minor = 0
    for rule in policy.rules:
        reason = rule.breach(report)
        if reason is None or applied_rate >= policy.max_credit_rate:
            continue
        rate = min(rule.credit_rate, policy.max_credit_rate - applied_rate)
        applied_rate += rate
        cumulative_minor = round_half_up(base * Fraction(applied_rate))
        amount_minor = cumulative_minor - credited_minor
        credited_minor = cumulative_minor
        capped = " (capped: credits stop at " + format_rate(policy.max_credit_rate) + ")"
        lines.append(
            InvoiceLine(
                kind="credit",
                charge_code=rule.code,
                description=rule.description,
                quantity=Decimal(shown_base_minor).scaleb(-exponent(currency)),
                rate=rate,
                amount_minor=-amount_minor,
                currency=currency,
                period_start=period.start,
                period_end=period.end,
                explanation=(
                    f"{reason}: {format_rate(rate)} of the "
                    f"{format_minor(shown_base_minor, currency)} fees for {period.label}"
                    f"{capped if rate < rule.credit_rate else ''}"
                ),
            )
        )
    return lines
