"""Rating: a subscription's terms and a period's usage aggregates into an invoice draft.

An invoice for the period that just ended carries, in this order: the next period's fee and
add-ons in advance (when a fee period is given), the usage of the ended period in arrears,
surcharges, minimum-commitment true-ups, discounts, SLA credits for the reported period,
pending lines passed through (prorations), late-usage adjustments, then the credit balance.

Totals: ``subtotal`` (charge kinds) + ``discounts`` (≤ 0) + ``credits`` = the sum of the
lines = the taxable amount, which is never negative. Tax is charged on that amount — after
discounts and credits — rounded once: ``tax = round_half_up(taxable × tax_rate)``, and
``total = taxable + tax``. Credits the invoice cannot absorb are carried forward as a
balance (a line moves them out), and a balance carried in is applied before tax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

import msgspec

from plans.catalog import PlanVersion
from plans.charges import (
    USAGE_CHARGE_TYPES,
    Charge,
    Phase,
    RatingContext,
    UsageAggregate,
    format_quantity,
)
from plans.contracts import ContractOverrides, Terms, resolve_terms
from plans.lines import CHARGE_KINDS, CREDIT_KINDS, DISCOUNT_KINDS, InvoiceLine
from plans.money import CurrencyMismatchError, exponent, format_minor, round_half_up
from plans.periods import Period
from plans.sla import SlaReport, sla_credit_lines

__all__ = [
    "InvoiceDraft",
    "LateUsage",
    "rate",
    "rate_terms",
    "recurring_lines",
]

_ZERO: Final = Decimal(0)
_WHOLE: Final = Fraction(1)
_NO_USAGE: Final = UsageAggregate()
_BALANCE_APPLIED: Final = "credit_balance_applied"
_BALANCE_CARRIED: Final = "credit_balance_carried_forward"


class LateUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Usage of an already invoiced period that arrived after it was finalized."""

    period_start: datetime
    period_end: datetime
    aggregates_before: dict[str, UsageAggregate]
    aggregates_after: dict[str, UsageAggregate]


class InvoiceDraft(msgspec.Struct, frozen=True, kw_only=True):
    """Rated lines and totals (all ``*_minor`` in ``currency``); see the module docstring."""

    plan_code: str
    plan_version: int
    currency: str
    period_start: datetime
    period_end: datetime
    lines: tuple[InvoiceLine, ...]
    subtotal_minor: int
    discounts_minor: int
    credits_minor: int
    taxable_minor: int
    tax_rate: Decimal
    tax_minor: int
    total_minor: int
    credit_balance_applied_minor: int
    credit_balance_carried_forward_minor: int


def rate(
    plan: PlanVersion,
    *,
    usage_period: Period,
    aggregates: Mapping[str, UsageAggregate],
    fee_period: Period | None = None,
    addons: Sequence[str] = (),
    overrides: ContractOverrides | Mapping[str, Mapping[str, Any]] | None = None,
    sla_report: SlaReport | None = None,
    tax_rate: Decimal = _ZERO,
    pending_lines: Sequence[InvoiceLine] = (),
    late_usage: Sequence[LateUsage] = (),
    credit_balance_minor: int = 0,
    sla_billed_share: Fraction = _WHOLE,
) -> InvoiceDraft:
    """Rate one subscription period.

    ``usage_period`` is the period whose usage is billed in arrears; ``fee_period`` the next
    one, whose fee and add-ons are billed in advance (None on a final invoice).
    ``credit_balance_minor`` is the merchant's credit balance carried in (≥ 0). An SLA
    report earns credits only if the plan version has an SLA policy; the credit base is
    what these terms bill in advance for the reported period: a whole period's recurring
    lines times ``sla_billed_share`` (see `plans.sla`).
    Late usage is rated under these terms; to rate it under an older plan version, call
    this for that version and pass its adjustment lines as ``pending_lines``.
    """
    terms = resolve_terms(plan, addons, overrides)
    return rate_terms(
        terms,
        usage_period=usage_period,
        aggregates=aggregates,
        fee_period=fee_period,
        sla_report=sla_report,
        tax_rate=tax_rate,
        pending_lines=pending_lines,
        late_usage=late_usage,
        credit_balance_minor=credit_balance_minor,
        sla_billed_share=sla_billed_share,
    )


def rate_terms(
    terms: Terms,
    *,
    usage_period: Period,
    aggregates: Mapping[str, UsageAggregate],
    fee_period: Period | None = None,
    sla_report: SlaReport | None = None,
    tax_rate: Decimal = _ZERO,
    pending_lines: Sequence[InvoiceLine] = (),
    late_usage: Sequence[LateUsage] = (),
    credit_balance_minor: int = 0,
    sla_billed_share: Fraction = _WHOLE,
) -> InvoiceDraft:
    """`rate` for terms already resolved (add-ons and overrides applied)."""
    currency = terms.currency
    if tax_rate < 0:
        raise ValueError(f"tax_rate must not be negative, got {tax_rate}")
    if credit_balance_minor < 0:
        raise ValueError(f"credit_balance_minor must not be negative, got {credit_balance_minor}")
    _check_usage_currency(currency, aggregates, "usage")
    for late in late_usage:
        _check_usage_currency(currency, late.aggregates_before, "late usage")
        _check_usage_currency(currency, late.aggregates_after, "late usage")
    for line in pending_lines:
        if line.currency != currency:
            raise CurrencyMismatchError(currency, line.currency, context=f"line {line.charge_code}")

    context = RatingContext(currency, exponent(currency), usage_period, fee_period, aggregates)
    lines = _rate_charges(terms.charges, context)

    if sla_report is not None and terms.sla_policy is not None:
        fee_base = sum(line.amount_minor for line in recurring_lines(terms, sla_report.period))
        lines.extend(
            sla_credit_lines(
                sla_report,
                terms.sla_policy,
                fee_base_minor=fee_base,
                currency=currency,
                billed_share=sla_billed_share,
            )
        )
    lines.extend(pending_lines)
    for late in late_usage:
        lines.extend(_late_usage_lines(terms, context, late))

    return _totals(terms, usage_period, lines, tax_rate, credit_balance_minor)


def recurring_lines(terms: Terms, period: Period) -> list[InvoiceLine]:
    """What the terms bill in advance for one period: fee, add-ons, surcharges, discounts.

    Usage charges and minimum commitments are left out, so a discount that also covers
    usage discounts only the recurring part here. Proration and the SLA credit base use it.
    """
    context = RatingContext(terms.currency, exponent(terms.currency), period, period, {})
    recurring = [charge for charge in terms.charges if charge.phase in _RECURRING_PHASES]
    return _rate_charges(recurring, context)


_RECURRING_PHASES: Final = frozenset({Phase.RECURRING, Phase.SURCHARGE, Phase.DISCOUNT})


def _rate_charges(charges: Sequence[Charge], context: RatingContext) -> list[InvoiceLine]:
    """Charges in phase order; a charge sees the lines of earlier phases, not of its own."""
    lines: list[InvoiceLine] = []
    phase_context = context
    current_phase: Phase | None = None
    for charge in charges:
        if charge.phase != current_phase:
            current_phase = charge.phase
            phase_context = context.with_lines(tuple(lines))
        lines.extend(charge.lines(phase_context))
    return lines


def _check_usage_currency(
    currency: str, aggregates: Mapping[str, UsageAggregate], what: str
) -> None:
    for metric, usage in aggregates.items():
        if usage.currency is not None and usage.currency != currency:
            raise CurrencyMismatchError(
                currency, usage.currency, context=f"{what} of {metric!r} for a {currency} plan"
            )


def _late_usage_lines(terms: Terms, context: RatingContext, late: LateUsage) -> list[InvoiceLine]:
    """rating(after) − rating(before), per usage charge, for the period the usage belongs to."""
    period = Period(late.period_start, late.period_end)
    lines: list[InvoiceLine] = []
    for charge in terms.charges:
        if not isinstance(charge, USAGE_CHARGE_TYPES):
            continue
        before_usage = late.aggregates_before.get(charge.metric, _NO_USAGE)
        after_usage = late.aggregates_after.get(charge.metric, _NO_USAGE)
        before = charge.usage_line(context, before_usage, period)
        after = charge.usage_line(context, after_usage, period)
        difference = after.amount_minor - before.amount_minor
        if difference == 0:
            continue
        change = _usage_change(charge.metric, before_usage, after_usage, context.currency)
        lines.append(
            InvoiceLine(
                kind="adjustment",
                charge_code=charge.code,
                description=f"{charge.description} (late usage)",
                quantity=after.quantity - before.quantity,
                unit_price=after.unit_price if after.unit_price == before.unit_price else None,
                rate=after.rate if after.rate == before.rate else None,
                amount_minor=difference,
                currency=context.currency,
                period_start=period.start,
                period_end=period.end,
                explanation=(
                    f"Late usage for {period.label}: {change}; "
                    f"{format_minor(before.amount_minor, context.currency)} → "
                    f"{format_minor(after.amount_minor, context.currency)}"
                ),
            )
        )
    return lines


def _usage_change(metric: str, before: UsageAggregate, after: UsageAggregate, currency: str) -> str:
    unit = "hours" if metric == "support_hours" else metric
    parts = []
    quantity = after.quantity - before.quantity
    if quantity:
        sign = "+" if quantity > 0 else "-"
        parts.append(f"{sign}{format_quantity(abs(quantity))} {unit}")
    gmv = after.gmv_minor - before.gmv_minor
    if gmv:
        sign = "+" if gmv > 0 else "-"
        parts.append(f"{sign}{format_minor(abs(gmv), currency)} GMV")
    return ", ".join(parts) or "transactions changed"


def _totals(
    terms: Terms,
    period: Period,
    lines: list[InvoiceLine],
    tax_rate: Decimal,
    credit_balance_minor: int,
) -> InvoiceDraft:
    currency = terms.currency
    net = sum(line.amount_minor for line in lines)
    applied = 0
    carried = credit_balance_minor
    if net < 0:
        carried += -net
        lines.append(
            _balance_line(
                period,
                currency,
                code=_BALANCE_CARRIED,
                description="Credit carried forward",
                amount_minor=-net,
                explanation=(
                    f"credits exceed charges by {format_minor(-net, currency)}: "
                    f"carried forward to the credit balance"
                ),
            )
        )
    elif credit_balance_minor and net:
        applied = min(credit_balance_minor, net)
        carried -= applied
        lines.append(
            _balance_line(
                period,
                currency,
                code=_BALANCE_APPLIED,
                description="Credit balance applied",
                amount_minor=-applied,
                explanation=(
                    f"{format_minor(applied, currency)} of the "
                    f"{format_minor(credit_balance_minor, currency)} credit balance"
                ),
            )
        )
    subtotal = discounts = credits = 0
    for line in lines:
        if line.kind in CHARGE_KINDS:
            subtotal += line.amount_minor
        elif line.kind in DISCOUNT_KINDS:
            discounts += line.amount_minor
        elif line.kind in CREDIT_KINDS:
            credits += line.amount_minor
    taxable = subtotal + discounts + credits
    tax = round_half_up(taxable * tax_rate)
    return InvoiceDraft(
        plan_code=terms.plan.code,
        plan_version=terms.plan.version,
        currency=currency,
        period_start=period.start,
        period_end=period.end,
        lines=tuple(lines),
        subtotal_minor=subtotal,
        discounts_minor=discounts,
        credits_minor=credits,
        taxable_minor=taxable,
        tax_rate=tax_rate,
        tax_minor=tax,
        total_minor=taxable + tax,
        credit_balance_applied_minor=applied,
        credit_balance_carried_forward_minor=carried,
    )


def _balance_line(
    period: Period,
    currency: str,
    *,
    code: str,
    description: str,
    amount_minor: int,
    explanation: str,
) -> InvoiceLine:
    return InvoiceLine(
        kind="credit",
        charge_code=code,
        description=description,
        quantity=Decimal(1),
        unit_price=Decimal(amount_minor).scaleb(-exponent(currency)),
        amount_minor=amount_minor,
        currency=currency,
        period_start=period.start,
        period_end=period.end,
        explanation=explanation,
    )
