"""Proration of a mid-period plan change, by elapsed time.

The recurring charges billed in advance for the period (fee, add-ons, surcharges, discounts)
are credited for the unused part under the old terms and charged for the rest of the period
under the new terms.

Rounding is cumulative: the amount for ``[a, b)`` of a period is ``c(b) − c(a)`` with
``c(t) = round_half_up(amount × elapsed(start, t) / length)``. Amounts for adjacent spans
therefore always add up to exactly the amount for their union: a full period prorates to the
full fee, two halves sum to the whole, and an upgrade followed by a downgrade in the same
period nets to exactly what each plan was used for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec

from plans.catalog import PlanVersion
from plans.contracts import ContractOverrides, Terms, resolve_terms
from plans.lines import InvoiceLine
from plans.money import CurrencyMismatchError, format_minor, round_half_up
from plans.periods import Period, elapsed
from plans.rating import recurring_lines

__all__ = ["ProrationResult", "prorate_change", "prorate_terms", "prorated_amount"]

_QUANTITY_PLACES = Decimal("0.000001")


class ProrationResult(msgspec.Struct, frozen=True, kw_only=True):
    """Proration lines of one change, their net, and when the new plan wants them invoiced."""

    lines: tuple[InvoiceLine, ...]
    net_minor: int
    is_invoiced_immediately: bool


def _cumulative(amount_minor: int, period: Period, instant: datetime) -> int:
    return round_half_up(amount_minor * period.fraction(period.start, instant))


def prorated_amount(amount_minor: int, period: Period, start: datetime, end: datetime) -> int:
    """The part of a period's amount that falls in ``[start, end)``, cumulatively rounded."""
    period.fraction(start, end)  # refuses instants outside the period and end < start
    return _cumulative(amount_minor, period, end) - _cumulative(amount_minor, period, start)


def prorate_change(
    old_plan: PlanVersion,
    new_plan: PlanVersion,
    *,
    period: Period,
    changed_at: datetime,
    old_addons: Sequence[str] = (),
    new_addons: Sequence[str] = (),
    old_overrides: ContractOverrides | Mapping[str, Mapping[str, Any]] | None = None,
    new_overrides: ContractOverrides | Mapping[str, Mapping[str, Any]] | None = None,
) -> ProrationResult:
    """Credit the old terms and charge the new ones for ``[changed_at, period.end)``.

    Works for any change of plan, add-ons or overrides (an add-on taken mid-period is a
    change from the terms without it to the terms with it).
    """
    return prorate_terms(
        resolve_terms(old_plan, old_addons, old_overrides),
        resolve_terms(new_plan, new_addons, new_overrides),
        period=period,
        changed_at=changed_at,
    )


def prorate_terms(
    old: Terms, new: Terms, *, period: Period, changed_at: datetime
) -> ProrationResult:
    """`prorate_change` for terms already resolved."""
    if old.currency != new.currency:
        raise CurrencyMismatchError(old.currency, new.currency, context="plan change")
    remaining = period.fraction(changed_at, period.end)
    lines: list[InvoiceLine] = []
    for terms, sign, verb in ((old, -1, "unused"), (new, 1, "remaining")):
        for line in recurring_lines(terms, period):
            amount = sign * prorated_amount(line.amount_minor, period, changed_at, period.end)
            if amount == 0:
                continue
            lines.append(_proration_line(terms, line, amount, remaining, verb, period, changed_at))
    return ProrationResult(
        lines=tuple(lines),
        net_minor=sum(line.amount_minor for line in lines),
        is_invoiced_immediately=new.plan.is_proration_invoiced_immediately,
    )


def _proration_line(
    terms: Terms,
    line: InvoiceLine,
    amount_minor: int,
    remaining: Fraction,
    verb: str,
    period: Period,
    changed_at: datetime,
) -> InvoiceLine:
    share = Decimal(remaining.numerator) / Decimal(remaining.denominator)
    seconds_left = int(elapsed(changed_at, period.end).total_seconds())
    plan = f"{terms.plan.code} v{terms.plan.version}"
    action = "credit for" if amount_minor < 0 else "charge for"
    return InvoiceLine(
        kind="proration",
        charge_code=line.charge_code,
        description=f"{line.description} ({plan}, {verb} time)",
        quantity=share.quantize(_QUANTITY_PLACES),
        unit_price=line.unit_price if line.quantity == 1 else None,
        rate=line.rate,
        amount_minor=amount_minor,
        currency=line.currency,
        period_start=changed_at.astimezone(period.start.tzinfo),
        period_end=period.end,
        explanation=(
            f"{action} {seconds_left:,} of {period.seconds:,} s of {period.label} "
            f"({share * 100:.2f}%) × {format_minor(line.amount_minor, line.currency)}"
        ),
    )
