"""Which tier fits: the same month of usage rated under every plan, and the break-even points.

Each plan (latest version, same currency) is quoted for one period: its fee plus the usage
billed at its prices. Break-even points answer "from how many orders (or how much GMV) does
the next plan up cost less?", holding the rest of the usage where it is. Costs are monotone
and piecewise linear between the charges' kinks (included units, tier edges, thresholds), so
the search checks each segment's ends and bisects inside the segment where the order flips.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Final, Literal

import msgspec

from plans.catalog import Catalog
from plans.charges import USAGE_CHARGE_TYPES, UsageAggregate, format_quantity
from plans.contracts import Terms, resolve_terms
from plans.money import format_minor
from plans.periods import Period
from plans.rating import InvoiceDraft, rate_terms

__all__ = ["Axis", "BreakEven", "Comparison", "PlanQuote", "compare_plans"]

Axis = Literal["orders", "gmv"]
_AXES: Final[tuple[Axis, ...]] = ("orders", "gmv")
_NO_USAGE: Final = UsageAggregate()


class PlanQuote(msgspec.Struct, frozen=True, kw_only=True):
    plan_code: str
    plan_version: int
    plan_name: str
    tier: str
    total_minor: int
    draft: InvoiceDraft


class BreakEven(msgspec.Struct, frozen=True, kw_only=True):
    """From ``from_value`` on the axis (orders, or GMV in minor units) up, ``cheaper_plan`` costs
    less than ``instead_of_plan``, the rest of the usage held as given."""

    axis: Axis
    cheaper_plan: str
    instead_of_plan: str
    from_value: int
    cheaper_total_minor: int
    instead_of_total_minor: int
    explanation: str


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    quotes: tuple[PlanQuote, ...]  # cheapest first
    break_evens: tuple[BreakEven, ...]

    @property
    def cheapest(self) -> PlanQuote:
        return self.quotes[0]


def compare_plans(
    catalog: Catalog,
    *,
    period: Period,
    aggregates: Mapping[str, UsageAggregate],
    addons: Mapping[str, Sequence[str]] | None = None,
    tax_rate: Decimal = Decimal(0),
    currency: str | None = None,
    max_orders: int = 10_000_000,
    max_gmv_minor: int = 100_000_000_000,
) -> Comparison:
    """Quote every plan's latest version for ``period``'s usage, cheapest first.

    ``addons`` maps a plan code to the add-ons to include for it. Break-evens are given for
    each pair of neighbouring plans, ordered by what they cost with no usage, on both axes,
    searched up to ``max_orders`` orders and ``max_gmv_minor`` GMV.
    """
    plans = catalog.latest_plans()
    currency = currency or plans[0].currency
    chosen = addons or {}
    terms = [
        resolve_terms(plan, chosen.get(plan.code, ()))
        for plan in plans
        if plan.currency == currency
    ]

    def cost(plan_terms: Terms, usage: Mapping[str, UsageAggregate]) -> InvoiceDraft:
        return rate_terms(
            plan_terms, usage_period=period, fee_period=period, aggregates=usage, tax_rate=tax_rate
        )

    quotes = [
        PlanQuote(
            plan_code=t.plan.code,
            plan_version=t.plan.version,
            plan_name=t.plan.name,
            tier=t.plan.tier,
            total_minor=draft.total_minor,
            draft=draft,
        )
        for t in terms
        for draft in (cost(t, aggregates),)
    ]
    quotes.sort(key=lambda quote: quote.total_minor)  # stable: ties keep catalog order

    by_base_cost = sorted(terms, key=lambda t: cost(t, {}).total_minor)
    limits: dict[Axis, int] = {"orders": max_orders, "gmv": max_gmv_minor}
    break_evens = [
        found
        for lower, higher in itertools.pairwise(by_base_cost)
        for axis in _AXES
        if (found := _break_even(lower, higher, axis, aggregates, limits[axis], cost)) is not None
    ]
    return Comparison(currency=currency, quotes=tuple(quotes), break_evens=tuple(break_evens))


def _with_axis(
    aggregates: Mapping[str, UsageAggregate], axis: Axis, value: int
) -> dict[str, UsageAggregate]:
    usage = dict(aggregates)
    orders = usage.get("orders", _NO_USAGE)
    if axis == "orders":
        # one transaction per order, so per-transaction fees scale with the orders
        usage["orders"] = msgspec.structs.replace(orders, count=value, quantity=Decimal(value))
    else:
        usage["orders"] = msgspec.structs.replace(orders, gmv_minor=value)
    return usage


def _kinks(terms: Terms, axis: Axis) -> list[Decimal]:
    dimension: Literal["quantity", "gmv"] = "quantity" if axis == "orders" else "gmv"
    return [
        point
        for charge in terms.charges
        if isinstance(charge, USAGE_CHARGE_TYPES) and charge.metric == "orders"
        for point in charge.kinks(dimension)
    ]


def _break_even(
    lower: Terms,
    higher: Terms,
    axis: Axis,
    aggregates: Mapping[str, UsageAggregate],
    limit: int,
    cost: Callable[[Terms, Mapping[str, UsageAggregate]], InvoiceDraft],
) -> BreakEven | None:
    def totals(value: int) -> tuple[int, int]:
        usage = _with_axis(aggregates, axis, value)
        return cost(higher, usage).total_minor, cost(lower, usage).total_minor

    def is_cheaper(value: int) -> bool:
        higher_total, lower_total = totals(value)
        return higher_total < lower_total

    points = {0, limit}
    for kink in _kinks(lower, axis) + _kinks(higher, axis):
        if 0 <= kink <= limit:
            points.update({math.floor(kink), math.ceil(kink)})
    ordered = sorted(points)
    found: int | None = 0 if is_cheaper(0) else None
    for start, end in itertools.pairwise(ordered):
        if found is not None:
            break
        if is_cheaper(end):
            # not cheaper at start, cheaper at end, linear in between: bisect
            low, high = start, end
            while high - low > 1:
                middle = (low + high) // 2
                if is_cheaper(middle):
                    high = middle
                else:
                    low = middle
            found = high
    if not found:
        return None  # never cheaper, or cheaper all along: no point where the order flips
    higher_total, lower_total = totals(found)
    currency = higher.currency
    if axis == "orders":
        where = f"{format_quantity(Decimal(found))} orders a period"
    else:
        where = f"{format_minor(found, currency)} GMV a period"
    return BreakEven(
        axis=axis,
        cheaper_plan=higher.plan.code,
        instead_of_plan=lower.plan.code,
        from_value=found,
        cheaper_total_minor=higher_total,
        instead_of_total_minor=lower_total,
        explanation=(
            f"from {where}, {higher.plan.name} costs less than {lower.plan.name}: "
            f"{format_minor(higher_total, currency)} against {format_minor(lower_total, currency)}"
        ),
    )
