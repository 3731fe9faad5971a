"""Money: integer minor units of an ISO 4217 currency, the one rounding rule, and allocation.

Every amount in `plans` is an ``int`` of minor units (fen for CNY). Prices and rates are
``Decimal``; turning a ``Decimal`` (or an exact ``Fraction``) into minor units goes through
`round_half_up`, and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Final

import msgspec

__all__ = [
    "CURRENCY_EXPONENTS",
    "CurrencyMismatchError",
    "Money",
    "UnknownCurrencyError",
    "allocate",
    "exponent",
    "format_minor",
    "format_price",
    "format_rate",
    "major_to_minor",
    "minor_to_major",
    "plain_decimal",
    "round_half_up",
]

# ISO 4217 minor-unit exponents of the currencies we can bill in.
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "IDR": 2,
    "INR": 2,
    "JPY": 0,
    "KRW": 0,
    "MOP": 2,
    "MYR": 2,
    "PHP": 2,
    "SGD": 2,
    "THB": 2,
    "TWD": 2,
    "USD": 2,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
}

_SYMBOLS: Final[dict[str, str]] = {
    "CNY": "¥",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "JP¥",
    "KRW": "₩",
    "HKD": "HK$",
    "TWD": "NT$",
    "SGD": "S$",
}

_HALF: Final = Fraction(1, 2)


class UnknownCurrencyError(ValueError):
    """A currency code that is not an ISO 4217 code we know the minor unit of."""


class CurrencyMismatchError(ValueError):
    """Two amounts in different currencies were combined."""

    def __init__(self, left: str, right: str, *, context: str = "") -> None:
        where = f" ({context})" if context else ""
        super().__init__(
            f"cannot combine {left} with {right}{where}: amounts must share a currency"
        )
        self.left = left
        self.right = right


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (CNY 2, JPY 0, KWD 3)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrencyError(
            f"unknown currency {currency!r}: expected an ISO 4217 code such as 'CNY'"
        ) from None


def round_half_up(value: Decimal | Fraction | int) -> int:
    """THE rounding rule: to the nearest integer, halves away from zero (2.5 → 3, -2.5 → -3).

    Callers pass amounts already expressed in minor units; the symmetric rule means a credit
    rounds to exactly the negative of the matching charge.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot round {value} to a minor unit")
        return int(value.to_integral_value(rounding=ROUND_HALF_UP))
    if value >= 0:
        return math.floor(value + _HALF)
    return -math.floor(-value + _HALF)


def major_to_minor(amount: Decimal | str | int, currency: str) -> int:
    """A major-unit amount (¥12.345) in minor units, rounded half-up (1235)."""
    return round_half_up(Decimal(amount).scaleb(exponent(currency)))


def minor_to_major(amount_minor: int, currency: str) -> Decimal:
    """Minor units as an exact major-unit Decimal (1235 CNY → Decimal('12.35'))."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def format_minor(amount_minor: int, currency: str) -> str:
    """Human form for explanations.

    123450 CNY → '¥1,234.50'; -500 CNY → '-¥5.00'; 1500 JPY → 'JP¥1,500'.
    """
    places = exponent(currency)
    major = Decimal(abs(amount_minor)).scaleb(-places)
    sign = "-" if amount_minor < 0 else ""
    return f"{sign}{_symbol(currency)}{major:,.{places}f}"


def format_price(price: Decimal, currency: str) -> str:
    """A per-unit price in major units, never shown with fewer places than the currency has.

    Decimal('0.3') CNY → '¥0.30'; Decimal('0.005') CNY → '¥0.005'.
    """
    places = max(exponent(currency), -_decimal_exponent(price.normalize()))
    sign = "-" if price < 0 else ""
    return f"{sign}{_symbol(currency)}{abs(price):,.{places}f}"


def format_rate(rate: Decimal) -> str:
    """A fraction as a percentage: Decimal('0.40') → '40%', Decimal('0.003') → '0.30%'."""
    percent = (rate * 100).normalize()
    places = -_decimal_exponent(percent)
    if places <= 0:
        return f"{percent:,.0f}%"
    return f"{percent:,.{max(places, 2)}f}%"


def plain_decimal(value: Decimal) -> Decimal:
    """The same number written without an exponent, as people and files should see it.

    PostgreSQL sends ``numeric`` 20000 as digits ``2`` and a weight, which asyncpg turns into
    ``Decimal('2E+4')``; its ``str`` (what JSON and text files get) is ``'2E+4'``. This gives
    ``Decimal('20000')``. Trailing zeros after the point are kept (``99.00`` stays ``99.00``).
    """
    if not value.is_finite() or _decimal_exponent(value) <= 0:
        return value
    return Decimal(format(value, "f"))


def allocate(amount_minor: int, weights: Sequence[int | Decimal]) -> list[int]:
    """Split an amount over weights so the parts sum to it exactly (largest remainder).

    Each part is within one minor unit of its exact share; leftover units go to the parts
    with the largest remainders, ties to the earlier part. Negative amounts split like
    positive ones with the signs flipped.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    exact_weights = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact_weights):
        raise ValueError("allocation weights must not be negative")
    total_weight = sum(exact_weights, Fraction(0))
    if total_weight == 0:
        raise ValueError("allocation weights must not all be zero")
    if amount_minor < 0:
        return [-part for part in allocate(-amount_minor, weights)]
    shares = [amount_minor * w / total_weight for w in exact_weights]
    parts = [math.floor(share) for share in shares]
    leftover = amount_minor - sum(parts)
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))
    for i in by_remainder[:leftover]:
        parts[i] += 1
    return parts


class Money(msgspec.Struct, frozen=True):
    """An amount of one currency in minor units. Arithmetic refuses to mix currencies."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            kind = type(self.amount_minor).__name__
            raise TypeError(f"amount_minor must be an int of minor units, got {kind}")
        exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def of_major(cls, amount: Decimal | str | int, currency: str) -> Money:
        """Money from a major-unit amount: Money.of_major('1234.5', 'CNY') is ¥1,234.50."""
        return cls(major_to_minor(amount, currency), currency)

    @property
    def major(self) -> Decimal:
        return minor_to_major(self.amount_minor, self.currency)

    def format(self) -> str:
        return format_minor(self.amount_minor, self.currency)

    def _same_currency(self, other: Money, operation: str) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {operation} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(self.currency, other.currency, context=operation)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other, "add")
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other, "subtract")
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __mul__(self, factor: int | Decimal) -> Money:
        """Scale by an integer or a Decimal rate, rounding half-up to the minor unit."""
        if isinstance(factor, bool) or not isinstance(factor, int | Decimal):
            raise TypeError("Money can only be multiplied by an int or a Decimal")
        return Money(round_half_up(self.amount_minor * factor), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other, "compare")
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same_currency(other, "compare")
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other, "compare")
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other, "compare")
        return self.amount_minor >= other.amount_minor

    def allocate(self, weights: Sequence[int | Decimal]) -> list[Money]:
        return [Money(part, self.currency) for part in allocate(self.amount_minor, weights)]

    def __str__(self) -> str:
        return self.format()


def _symbol(currency: str) -> str:
    return _SYMBOLS.get(currency, f"{currency} ")


def _decimal_exponent(value: Decimal) -> int:
    exp = value.as_tuple().exponent
    if not isinstance(exp, int):
        raise ValueError(f"{value} is not a finite number")
    return exp
