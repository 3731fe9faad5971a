"""Proration of a mid-period plan change, by elapsed time.

The recurring charges billed in advance for the period (fee, add-ons, surcharges, discounts)
are credited for the unused part under the old terms and charged for the rest of the period
under the new terms. A charge that is the same before and after (the fee when only an add-on
changes) would be credited and charged again for the same span: such a pair nets to zero and
is not written.

One rounding, at the line: the amount for ``[a, b)`` of a period is
``round_half_up(amount × seconds(a, b) / seconds(period))``, computed exactly (a ``Fraction``),
counting by the whole second (`Period.seconds_between`). Nothing rounded is multiplied again:
the share shown on the line (``quantity``, six places) is for people. Each line is therefore
within half a minor unit of its exact share, and the pieces of a period split at n instants add
up to the whole within n/2 minor units (two halves of ¥99.99 are ¥50.00 each).

What a line says is for people (`describe_share`): the part of the period in days and hours,
its dates in the period's zone, named ("credit for 14 d 9 h 23 min of 30 d (16 Nov 14:37 –
1 Dec, Asia/Shanghai): 47.99% of ¥99.00"). Nothing is computed from the words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import msgspec

from plans.catalog import PlanVersion
from plans.contracts import ContractOverrides, Terms, resolve_terms
from plans.lines import InvoiceLine
from plans.money import CurrencyMismatchError, format_minor, round_half_up
from plans.periods import Period
from plans.rating import recurring_lines

__all__ = [
    "ProrationResult",
    "billed_share",
    "describe_share",
    "prorate_change",
    "prorate_terms",
    "prorated_amount",
    "time_share",
]

_QUANTITY_PLACES = Decimal("0.000001")


class ProrationResult(msgspec.Struct, frozen=True, kw_only=True):
    """Proration lines of one change, their net, and when the new plan wants them invoiced."""

    lines: tuple[InvoiceLine, ...]
    net_minor: int
    is_invoiced_immediately: bool


def time_share(period: Period, start: datetime, end: datetime) -> Fraction:
    """The exact share of ``period`` in ``[start, end)``, by the whole second."""
    return Fraction(period.seconds_between(start, end), period.seconds)


def _duration(seconds: int) -> str:
    """``1,382,400`` → ``16 d``; ``1,245,780`` → ``14 d 10 h 3 min`` (seconds only when some)."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else "", f"{rest} s" if rest else ""]  # fmt: skip
    return " ".join(part for part in parts if part) or "0 s"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
"""Month names spelled here, not by ``%b``, which follows the process's locale."""


def _moment(instant: datetime, *, with_time: bool, with_year: bool) -> str:
    """``16 Nov``, ``16 Nov 14:37``, ``16 Dec 2026 14:37`` (the instant's own zone)."""
    text = f"{instant.day} {_MONTHS[instant.month - 1]}"
    if with_year:
        text += f" {instant.year}"
    return f"{text} {instant:%H:%M}" if with_time else text


def describe_share(period: Period, start: datetime, end: datetime) -> str:
    """``[start, end)`` of ``period`` for people, in the period's zone, named:
    ``16 d of 31 d (16 Oct – 1 Nov, Asia/Shanghai)`` or ``14 d 9 h 23 min of 30 d
    (16 Nov 14:37 – 1 Dec, Asia/Shanghai)``. Times show where an end is not a midnight; years
    show where the span crosses one."""
    tz = period.start.tzinfo
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    with_year = local_start.year != local_end.year
    shown = [
        _moment(moment, with_time=moment.time() != time(), with_year=with_year)
        for moment in (local_start, local_end)
    ]
    name = getattr(tz, "key", None) or local_start.tzname() or "UTC"
    return (
        f"{_duration(period.seconds_between(start, end))} of {_duration(period.seconds)} "
        f"({shown[0]} – {shown[1]}, {name})"
    )


def prorated_amount(amount_minor: int, period: Period, start: datetime, end: datetime) -> int:
    """The part of a period's amount that falls in ``[start, end)``: the amount times the exact
    share of seconds, rounded half-up once."""
    return round_half_up(amount_minor * time_share(period, start, end))


def billed_share(part: Period, whole: Period) -> Fraction:
    """The share of ``whole`` (a billing period) that ``part`` (a subscription period inside
    it: a first period that starts mid-month, a last one cut short by a cancellation) covers:
    what was billed in advance for ``part`` is the whole period's amount times this."""
    return time_share(whole, part.start, part.end)


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
    span = _Span(period, changed_at, period.seconds_between(changed_at, period.end))
    credits = [span.line(old, line, "unused") for line in recurring_lines(old, period)]
    charges = [span.line(new, line, "remaining") for line in recurring_lines(new, period)]
    for credit in list(credits):  # the same item, same span, credited and charged again
        twin = next(
            (
                charge
                for charge in charges
                if charge.charge_code == credit.charge_code
                and charge.amount_minor == -credit.amount_minor
            ),
            None,
        )
        if twin is not None:
            credits.remove(credit)
            charges.remove(twin)
    lines = tuple(line for line in (*credits, *charges) if line.amount_minor != 0)
    return ProrationResult(
        lines=lines,
        net_minor=sum(line.amount_minor for line in lines),
        is_invoiced_immediately=new.plan.is_proration_invoiced_immediately,
    )


class _Span(NamedTuple):
    """``[changed_at, period.end)``: the part of the period a change re-prices."""

    period: Period
    changed_at: datetime
    seconds: int

    def line(self, terms: Terms, line: InvoiceLine, verb: str) -> InvoiceLine:
        """The proration line of one recurring line: credited (``unused``, under the old
        terms) or charged (``remaining``, under the new), rounded once from the exact share."""
        period = self.period
        share = Fraction(self.seconds, period.seconds)
        sign = -1 if verb == "unused" else 1
        amount_minor = sign * round_half_up(line.amount_minor * share)
        shown = Decimal(share.numerator) / Decimal(share.denominator)
        plan = f"{terms.plan.code} v{terms.plan.version}"
        action = "credit for" if amount_minor < 0 else "charge for"
        span = describe_share(period, self.changed_at, period.end)
        return InvoiceLine(
            kind="proration",
            charge_code=line.charge_code,
            description=f"{line.description} ({plan}, {verb} time)",
            quantity=shown.quantize(_QUANTITY_PLACES),
            unit_price=line.unit_price if line.quantity == 1 else None,
            rate=line.rate,
            amount_minor=amount_minor,
            currency=line.currency,
            period_start=self.changed_at.astimezone(period.start.tzinfo),
            period_end=period.end,
            explanation=(
                f"{action} {span}: {shown * 100:.2f}% of "
                f"{format_minor(line.amount_minor, line.currency)}"
            ),
        )
