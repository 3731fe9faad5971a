"""Charge models: one class per way of pricing, each turning aggregates into invoice lines.

Charges are data (msgspec Structs tagged by ``model``, exactly as written in catalog.toml)
with one method, `lines`, that reads a `RatingContext` and returns `InvoiceLine`s.
Conventions: fixed amounts are ``*_minor`` ints; per-unit prices are ``Decimal`` major units
(¥0.30, sub-fen prices allowed); rates are ``Decimal`` fractions (0.003 = 0.30%). Each line is
computed exactly in ``Decimal`` and rounded once, by `plans.money.round_half_up`.

Charges run in phases (see `Phase`) so that a surcharge sees the fee, a minimum commitment
sees the usage, and a discount sees what it discounts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import ClassVar, Final, Literal

import msgspec

from plans.lines import InvoiceLine, LineKind
from plans.money import format_minor, format_price, format_rate, round_half_up
from plans.periods import Period

__all__ = [
    "METRICS",
    "USAGE_CHARGE_TYPES",
    "Charge",
    "FlatAddon",
    "FlatFee",
    "Graduated",
    "MinimumCommitment",
    "Package",
    "PerHour",
    "PerUnit",
    "Percentage",
    "PercentageDiscount",
    "Phase",
    "RatingContext",
    "Surcharge",
    "Tier",
    "UsageAggregate",
    "UsageCharge",
    "Volume",
    "format_quantity",
]

Metric = Literal["orders", "support_hours"]
METRICS: Final[tuple[Metric, ...]] = ("orders", "support_hours")
_UNIT_NAMES: Final[dict[str, tuple[str, str]]] = {
    "orders": ("order", "orders"),
    "support_hours": ("hour", "hours"),
}
_ZERO: Final = Decimal(0)


class UsageAggregate(msgspec.Struct, frozen=True, kw_only=True):
    """A period's usage of one metric, summed by the service (rate aggregates, not events).

    ``count`` is the number of events (transactions), ``quantity`` the summed quantity
    (handled orders, or hours for ``support_hours``), ``gmv_minor`` the summed GMV in minor
    units of ``currency`` (None means "the subscription's currency").
    """

    count: int = 0
    quantity: Decimal = _ZERO
    gmv_minor: int = 0
    currency: str | None = None

    def __post_init__(self) -> None:
        if self.count < 0 or self.quantity < 0 or self.gmv_minor < 0:
            raise ValueError(
                "usage aggregates must not be negative "
                f"(count={self.count}, quantity={self.quantity}, gmv_minor={self.gmv_minor})"
            )


_NO_USAGE: Final = UsageAggregate()


def format_quantity(quantity: Decimal) -> str:
    """'15,600' for whole quantities, '12.5' for fractional ones."""
    if quantity == quantity.to_integral_value():
        return f"{int(quantity):,}"
    return f"{quantity.normalize():,f}"


def _units(metric: str, quantity: Decimal) -> str:
    singular, plural = _UNIT_NAMES.get(metric, ("unit", "units"))
    return f"{format_quantity(quantity)} {singular if quantity == 1 else plural}"


class Phase(IntEnum):
    """Order in which charges are rated; later phases see the lines of earlier ones."""

    RECURRING = 0
    USAGE = 1
    SURCHARGE = 2
    COMMITMENT = 3
    DISCOUNT = 4


@dataclass(frozen=True, slots=True)
class RatingContext:
    """What a charge may look at: currency, periods, usage, and the lines rated before it."""

    currency: str
    exponent: int
    usage_period: Period
    fee_period: Period | None
    aggregates: Mapping[str, UsageAggregate]
    lines: Sequence[InvoiceLine] = ()

    def usage(self, metric: str) -> UsageAggregate:
        return self.aggregates.get(metric, _NO_USAGE)

    def with_lines(self, lines: Sequence[InvoiceLine]) -> RatingContext:
        return RatingContext(
            self.currency, self.exponent, self.usage_period, self.fee_period, self.aggregates, lines
        )


def _minor(major: Decimal, exponent: int) -> int:
    """Exact major-unit Decimal → minor units, through the one rounding rule."""
    return round_half_up(major.scaleb(exponent))


def _major(amount_minor: int, exponent: int) -> Decimal:
    return Decimal(amount_minor).scaleb(-exponent)


def _sum_kinds(lines: Sequence[InvoiceLine], kinds: Sequence[str]) -> int:
    return sum(line.amount_minor for line in lines if line.kind in kinds)


def _check_non_negative(**values: Decimal | int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")


def _check_rate(name: str, rate: Decimal, *, upper: Decimal | None = Decimal(1)) -> None:
    if not rate.is_finite() or rate < 0 or (upper is not None and rate > upper):
        bound = f"between 0 and {upper}" if upper is not None else "0 or more"
        raise ValueError(f"{name} must be a fraction {bound} (0.003 = 0.30%), got {rate}")


class _ChargeBase(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="model", forbid_unknown_fields=True
):
    """Fields every charge has: a code unique within its plan, and what invoices call it."""

    code: str
    description: str

    phase: ClassVar[Phase]
    kind: ClassVar[LineKind]

    def _line(
        self,
        ctx: RatingContext,
        period: Period,
        *,
        quantity: Decimal,
        amount_minor: int,
        explanation: str,
        unit_price: Decimal | None = None,
        rate: Decimal | None = None,
    ) -> InvoiceLine:
        return InvoiceLine(
            kind=self.kind,
            charge_code=self.code,
            description=self.description,
            quantity=quantity,
            unit_price=unit_price,
            rate=rate,
            amount_minor=amount_minor,
            currency=ctx.currency,
            period_start=period.start,
            period_end=period.end,
            explanation=explanation,
        )


# -- recurring, billed in advance for the fee period -----------------------------------------


class _Flat(_ChargeBase, frozen=True, kw_only=True):
    amount_minor: int

    phase: ClassVar[Phase] = Phase.RECURRING

    def __post_init__(self) -> None:
        _check_non_negative(amount_minor=self.amount_minor)

    def lines(self, ctx: RatingContext) -> list[InvoiceLine]:
        period = ctx.fee_period
        if period is None:
            return []
        price = format_minor(self.amount_minor, ctx.currency)
        return [
            self._line(
                ctx,
                period,
                quantity=Decimal(1),
                unit_price=_major(self.amount_minor, ctx.exponent),
                amount_minor=self.amount_minor,
                explanation=f"{price} for {period.label}, billed in advance",
            )
        ]


class FlatFee(_Flat, tag="flat_fee", frozen=True, kw_only=True):
    """The plan's recurring fee, billed in advance for the fee period."""

    kind: ClassVar[LineKind] = "fee"


class FlatAddon(_Flat, tag="flat_addon", frozen=True, kw_only=True):
    """A fixed add-on fee per period (tooling bundle, emergency response), billed in advance."""

    kind: ClassVar[LineKind] = "addon"


class Surcharge(_ChargeBase, tag="surcharge", frozen=True, kw_only=True):
    """An add-on priced as a share of the plan's recurring fee (response-time SLA, complexity).

    The base is the fee lines only (never other surcharges), so two surcharges add up rather
    than compound.
    """

    rate: Decimal

    phase: ClassVar[Phase] = Phase.SURCHARGE
    kind: ClassVar[LineKind] = "addon"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate, upper=None)

    def lines(self, ctx: RatingContext) -> list[InvoiceLine]:
        period = ctx.fee_period
        base_minor = _sum_kinds(ctx.lines, ("fee",))
        if period is None or base_minor == 0:
            return []
        base = _major(base_minor, ctx.exponent)
        return [
            self._line(
                ctx,
                period,
                quantity=base,
                rate=self.rate,
                amount_minor=_minor(base * self.rate, ctx.exponent),
                explanation=(
                    f"{format_rate(self.rate)} of the {format_minor(base_minor, ctx.currency)} "
                    f"fee for {period.label}"
                ),
            )
        ]


# -- usage, billed in arrears for the usage period -------------------------------------------


class _UsageBase(_ChargeBase, frozen=True, kw_only=True):
    metric: Metric

    phase: ClassVar[Phase] = Phase.USAGE
    kind: ClassVar[LineKind] = "usage"

    def lines(self, ctx: RatingContext) -> list[InvoiceLine]:
        return [self.usage_line(ctx, ctx.usage(self.metric), ctx.usage_period)]

    def usage_line(
        self, ctx: RatingContext, usage: UsageAggregate, period: Period
    ) -> InvoiceLine:  # pragma: no cover - every usage model overrides it
        raise NotImplementedError

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        """Usage values where this charge's marginal price changes (for break-even search)."""
        del dimension
        return ()


class PerUnit(_UsageBase, tag="per_unit", frozen=True, kw_only=True):
    """A price per unit after an allowance of included units."""

    unit_price: Decimal
    included_units: Decimal = _ZERO

    def __post_init__(self) -> None:
        _check_non_negative(unit_price=self.unit_price, included_units=self.included_units)

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        used = usage.quantity
        billable = max(_ZERO, used - self.included_units)
        price = format_price(self.unit_price, ctx.currency)
        if self.included_units == 0:
            explanation = f"{_units(self.metric, used)} × {price}"
        elif billable == 0:
            included = format_quantity(self.included_units)
            explanation = f"{_units(self.metric, used)}: within {included} included"
        else:
            explanation = (
                f"{_units(self.metric, used)}: {format_quantity(self.included_units)} included, "
                f"{format_quantity(billable)} × {price}"
            )
        return self._line(
            ctx,
            period,
            quantity=billable,
            unit_price=self.unit_price,
            amount_minor=_minor(billable * self.unit_price, ctx.exponent),
            explanation=explanation,
        )

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        return (self.included_units,) if dimension == "quantity" else ()


class Tier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pricing tier: units up to and including ``up_to`` (left out: no upper bound)."""

    unit_price: Decimal
    up_to: Decimal | None = None
    flat_fee_minor: int = 0

    def __post_init__(self) -> None:
        _check_non_negative(
            up_to=self.up_to, unit_price=self.unit_price, flat_fee_minor=self.flat_fee_minor
        )


def _check_tiers(tiers: Sequence[Tier]) -> None:
    if not tiers:
        raise ValueError("tiers must list at least one tier")
    previous = _ZERO
    for index, tier in enumerate(tiers):
        is_last = index == len(tiers) - 1
        if tier.up_to is None:
            if not is_last:
                raise ValueError(
                    f"tiers[{index}].up_to is empty but only the last tier may be open"
                )
            continue
        if is_last:
            raise ValueError(
                f"tiers[{index}].up_to must be empty: the last tier has no upper bound"
            )
        if tier.up_to <= previous:
            raise ValueError(
                f"tiers[{index}].up_to must be greater than {format_quantity(previous)}, "
                f"got {format_quantity(tier.up_to)}"
            )
        previous = tier.up_to


def _tier_range(tiers: Sequence[Tier], index: int) -> str:
    lower = tiers[index - 1].up_to if index else None
    upper = tiers[index].up_to
    if lower is None:
        return "up to " + format_quantity(upper) if upper is not None else "of all units"
    if upper is None:
        return f"over {format_quantity(lower)}"
    return f"over {format_quantity(lower)} up to {format_quantity(upper)}"


def _in_tier(quantity: Decimal, tier: Tier, ctx: RatingContext) -> tuple[Decimal, str]:
    """What ``quantity`` units cost at ``tier`` (its unit price and flat fee), and how."""
    amount = quantity * tier.unit_price + _major(tier.flat_fee_minor, ctx.exponent)
    detail = f"{format_quantity(quantity)} × {format_price(tier.unit_price, ctx.currency)}"
    if tier.flat_fee_minor:
        detail += f" + {format_minor(tier.flat_fee_minor, ctx.currency)} flat"
    return amount, detail


class Graduated(_UsageBase, tag="graduated", frozen=True, kw_only=True):
    """Each unit priced by the tier it falls in (the first 3,000 at one price, the next ...)."""

    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        _check_tiers(self.tiers)

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        used = usage.quantity
        total = _ZERO
        parts: list[str] = []
        lower = _ZERO
        for tier in self.tiers:
            if used <= lower:
                break
            upper = used if tier.up_to is None else min(used, tier.up_to)
            amount, part = _in_tier(upper - lower, tier, ctx)
            total += amount
            parts.append(part)
            lower = upper
        detail = " + ".join(parts) if parts else "nothing to charge"
        return self._line(
            ctx,
            period,
            quantity=used,
            amount_minor=_minor(total, ctx.exponent),
            explanation=f"{_units(self.metric, used)}: {detail}",
        )

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        if dimension != "quantity":
            return ()
        return tuple(tier.up_to for tier in self.tiers if tier.up_to is not None)


class Volume(_UsageBase, tag="volume", frozen=True, kw_only=True):
    """All units priced at the tier the period's total falls in."""

    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        _check_tiers(self.tiers)

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        used = usage.quantity
        index = next(
            i for i, tier in enumerate(self.tiers) if tier.up_to is None or used <= tier.up_to
        )
        tier = self.tiers[index]
        if used == 0:
            return self._line(
                ctx,
                period,
                quantity=used,
                unit_price=tier.unit_price,
                amount_minor=0,
                explanation=f"{_units(self.metric, used)}: nothing to charge",
            )
        total, detail = _in_tier(used, tier, ctx)
        return self._line(
            ctx,
            period,
            quantity=used,
            unit_price=tier.unit_price,
            amount_minor=_minor(total, ctx.exponent),
            explanation=(
                f"{_units(self.metric, used)}, all in the tier {_tier_range(self.tiers, index)}: "
                f"{detail}"
            ),
        )

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        if dimension != "quantity":
            return ()
        edges = [tier.up_to for tier in self.tiers if tier.up_to is not None]
        return tuple(sorted({*edges, *(edge + 1 for edge in edges)}))


class Package(_UsageBase, tag="package", frozen=True, kw_only=True):
    """A price per started block of ``package_size`` units (2,350 orders = 3 blocks of 1,000)."""

    package_size: Decimal
    package_price: Decimal
    included_units: Decimal = _ZERO

    def __post_init__(self) -> None:
        if self.package_size <= 0:
            raise ValueError(f"package_size must be positive, got {self.package_size}")
        _check_non_negative(package_price=self.package_price, included_units=self.included_units)

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        used = usage.quantity
        billable = max(_ZERO, used - self.included_units)
        blocks = Decimal(math.ceil(billable / self.package_size))
        included = (
            f"{format_quantity(self.included_units)} included, " if self.included_units else ""
        )
        block_word = "block" if blocks == 1 else "blocks"
        return self._line(
            ctx,
            period,
            quantity=blocks,
            unit_price=self.package_price,
            amount_minor=_minor(blocks * self.package_price, ctx.exponent),
            explanation=(
                f"{_units(self.metric, used)}: {included}{format_quantity(blocks)} {block_word} "
                f"of {format_quantity(self.package_size)} × "
                f"{format_price(self.package_price, ctx.currency)}"
            ),
        )

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        return (self.included_units,) if dimension == "quantity" else ()


class Percentage(_UsageBase, tag="percentage", frozen=True, kw_only=True):
    """A share of an amount (the GMV fee): rate × the part of GMV above the threshold.

    Plus an optional fixed fee per transaction (``count``), then held between the optional
    minimum and maximum per period. Rated on the period's aggregate, once, never per order.
    """

    rate: Decimal
    threshold_minor: int = 0
    fixed_fee_minor: int = 0
    minimum_minor: int | None = None
    maximum_minor: int | None = None

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_non_negative(
            threshold_minor=self.threshold_minor,
            fixed_fee_minor=self.fixed_fee_minor,
            minimum_minor=self.minimum_minor,
            maximum_minor=self.maximum_minor,
        )
        if (
            self.minimum_minor is not None
            and self.maximum_minor is not None
            and self.minimum_minor > self.maximum_minor
        ):
            raise ValueError(
                f"minimum_minor ({self.minimum_minor}) must not exceed "
                f"maximum_minor ({self.maximum_minor})"
            )

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        currency, exponent = ctx.currency, ctx.exponent
        above_minor = max(0, usage.gmv_minor - self.threshold_minor)
        above = _major(above_minor, exponent)
        raw = above * self.rate + _major(usage.count * self.fixed_fee_minor, exponent)
        amount_minor = _minor(raw, exponent)
        gmv = format_minor(usage.gmv_minor, currency)
        threshold = format_minor(self.threshold_minor, currency)
        if self.threshold_minor == 0:
            explanation = f"GMV {gmv} × {format_rate(self.rate)}"
        elif above_minor == 0:
            explanation = f"GMV {gmv}: not above the {threshold} threshold"
        else:
            explanation = (
                f"GMV {gmv}: {format_minor(above_minor, currency)} above the {threshold} "
                f"threshold × {format_rate(self.rate)}"
            )
        if self.fixed_fee_minor:
            explanation += (
                f" + {format_quantity(Decimal(usage.count))} transactions × "
                f"{format_minor(self.fixed_fee_minor, currency)}"
            )
        if self.minimum_minor is not None and amount_minor < self.minimum_minor:
            amount_minor = self.minimum_minor
            explanation += f"; raised to the {format_minor(amount_minor, currency)} minimum"
        if self.maximum_minor is not None and amount_minor > self.maximum_minor:
            amount_minor = self.maximum_minor
            explanation += f"; capped at the {format_minor(amount_minor, currency)} maximum"
        return self._line(
            ctx,
            period,
            quantity=above,
            rate=self.rate,
            amount_minor=amount_minor,
            explanation=explanation,
        )

    def kinks(self, dimension: Literal["quantity", "gmv"]) -> tuple[Decimal, ...]:
        if dimension != "gmv":
            return ()
        points = [Decimal(self.threshold_minor)]
        if self.rate:
            for bound in (self.minimum_minor, self.maximum_minor):
                if bound is not None:
                    points.append(self.threshold_minor + Decimal(bound) / self.rate)
        return tuple(points)


class PerHour(_UsageBase, tag="per_hour", frozen=True, kw_only=True):
    """A price per consultation hour, optionally billed in started increments (0.5 h)."""

    metric: Metric = "support_hours"
    unit_price: Decimal
    increment_hours: Decimal | None = None

    def __post_init__(self) -> None:
        _check_non_negative(unit_price=self.unit_price)
        if self.increment_hours is not None and self.increment_hours <= 0:
            raise ValueError(f"increment_hours must be positive, got {self.increment_hours}")

    def usage_line(self, ctx: RatingContext, usage: UsageAggregate, period: Period) -> InvoiceLine:
        used = usage.quantity
        billable = used
        if self.increment_hours is not None:
            billable = math.ceil(used / self.increment_hours) * self.increment_hours
        price = format_price(self.unit_price, ctx.currency)
        explanation = f"{_units(self.metric, used)} × {price}"
        if billable != used:
            step = format_quantity(self.increment_hours or _ZERO)
            explanation = (
                f"{_units(self.metric, used)}, billed in {step}-hour steps as "
                f"{format_quantity(billable)} × {price}"
            )
        return self._line(
            ctx,
            period,
            quantity=billable,
            unit_price=self.unit_price,
            amount_minor=_minor(billable * self.unit_price, ctx.exponent),
            explanation=explanation,
        )


# -- after usage: commitments and discounts ---------------------------------------------------

_DISCOUNTABLE: Final = frozenset({"fee", "usage", "addon", "minimum_true_up"})
_COMMITTABLE: Final = frozenset({"fee", "usage", "addon"})


def _check_kinds(name: str, kinds: Sequence[str], allowed: frozenset[str]) -> None:
    if not kinds:
        raise ValueError(f"{name} must name at least one line kind")
    unknown = sorted(set(kinds) - allowed)
    if unknown:
        raise ValueError(f"{name} has unknown line kinds {unknown}; allowed: {sorted(allowed)}")


class MinimumCommitment(_ChargeBase, tag="minimum_commitment", frozen=True, kw_only=True):
    """A minimum spend per period: a true-up line when the period's charges fall short."""

    amount_minor: int
    applies_to: tuple[LineKind, ...] = ("usage",)

    phase: ClassVar[Phase] = Phase.COMMITMENT
    kind: ClassVar[LineKind] = "minimum_true_up"

    def __post_init__(self) -> None:
        _check_non_negative(amount_minor=self.amount_minor)
        _check_kinds("applies_to", self.applies_to, _COMMITTABLE)

    def lines(self, ctx: RatingContext) -> list[InvoiceLine]:
        spent = _sum_kinds(ctx.lines, self.applies_to)
        shortfall = self.amount_minor - spent
        if shortfall <= 0:
            return []
        currency = ctx.currency
        return [
            self._line(
                ctx,
                ctx.usage_period,
                quantity=Decimal(1),
                unit_price=_major(shortfall, ctx.exponent),
                amount_minor=shortfall,
                explanation=(
                    f"minimum {format_minor(self.amount_minor, currency)} for "
                    f"{ctx.usage_period.label}, charges {format_minor(spent, currency)}: "
                    f"true-up {format_minor(shortfall, currency)}"
                ),
            )
        ]


class PercentageDiscount(_ChargeBase, tag="percentage_discount", frozen=True, kw_only=True):
    """A percentage off the lines of the listed kinds (bring-your-own system: 20% off the fee)."""

    rate: Decimal
    applies_to: tuple[LineKind, ...] = ("fee",)

    phase: ClassVar[Phase] = Phase.DISCOUNT
    kind: ClassVar[LineKind] = "discount"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_kinds("applies_to", self.applies_to, _DISCOUNTABLE)

    def lines(self, ctx: RatingContext) -> list[InvoiceLine]:
        base_lines = [line for line in ctx.lines if line.kind in self.applies_to]
        base_minor = sum(line.amount_minor for line in base_lines)
        if base_minor <= 0:
            return []
        period = Period(
            min(line.period_start for line in base_lines),
            max(line.period_end for line in base_lines),
        )
        base = _major(base_minor, ctx.exponent)
        return [
            self._line(
                ctx,
                period,
                quantity=base,
                rate=self.rate,
                amount_minor=-_minor(base * self.rate, ctx.exponent),
                explanation=(
                    f"-{format_rate(self.rate)} of {format_minor(base_minor, ctx.currency)} "
                    f"({', '.join(self.applies_to)})"
                ),
            )
        ]


UsageCharge = PerUnit | Graduated | Volume | Package | Percentage | PerHour
Charge = (
    FlatFee
    | FlatAddon
    | Surcharge
    | PerUnit
    | Graduated
    | Volume
    | Package
    | Percentage
    | PerHour
    | MinimumCommitment
    | PercentageDiscount
)
USAGE_CHARGE_TYPES: Final = (PerUnit, Graduated, Volume, Package, Percentage, PerHour)
