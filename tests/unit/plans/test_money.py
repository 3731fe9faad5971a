"""Money: minor units, the one rounding rule, formatting, allocation."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest

from plans.money import (
    CurrencyMismatchError,
    Money,
    UnknownCurrencyError,
    allocate,
    exponent,
    format_minor,
    format_price,
    format_rate,
    major_to_minor,
    minor_to_major,
    plain_decimal,
    round_half_up,
)


@pytest.mark.parametrize(
    ("currency", "places"),
    [("CNY", 2), ("USD", 2), ("EUR", 2), ("HKD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3)],
)
def test_minor_unit_exponent_follows_iso_4217(currency: str, places: int) -> None:
    assert exponent(currency) == places


def test_unknown_currency_is_refused_by_name() -> None:
    with pytest.raises(UnknownCurrencyError, match="'RMB'"):
        exponent("RMB")
    with pytest.raises(UnknownCurrencyError):
        Money(100, "RMB")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2.5"), 3),  # half goes up
        (Decimal("2.4999"), 2),
        (Decimal("2.5001"), 3),
        (Decimal("-2.5"), -3),  # and away from zero for credits
        (Decimal("-2.4"), -2),
        (Decimal("0.5"), 1),
        (Decimal("-0.5"), -1),
        (Decimal("7"), 7),
        (Fraction(5, 2), 3),
        (Fraction(-5, 2), -3),
        (Fraction(7, 3), 2),  # 2.333...
        (Fraction(-8, 3), -3),  # -2.666...
        (12, 12),
    ],
)
def test_round_half_up_to_the_minor_unit(value: Decimal | Fraction | int, expected: int) -> None:
    assert round_half_up(value) == expected


def test_round_half_up_refuses_nan() -> None:
    with pytest.raises(ValueError, match="cannot round"):
        round_half_up(Decimal("NaN"))


@pytest.mark.parametrize(
    ("major", "currency", "minor"),
    [
        ("12.345", "CNY", 1235),  # 1234.5 fen rounds up
        ("12.344", "CNY", 1234),
        ("99", "CNY", 9900),
        ("1500", "JPY", 1500),
        ("1500.5", "JPY", 1501),
        ("1.2345", "KWD", 1235),
    ],
)
def test_major_amounts_convert_to_minor_units(major: str, currency: str, minor: int) -> None:
    assert major_to_minor(Decimal(major), currency) == minor


def test_minor_units_convert_back_to_exact_major_amounts() -> None:
    assert minor_to_major(123450, "CNY") == Decimal("1234.50")
    assert minor_to_major(1500, "JPY") == Decimal("1500")


def test_money_arithmetic_in_one_currency() -> None:
    assert Money(9900, "CNY") + Money(3960, "CNY") == Money(13860, "CNY")
    assert Money(9900, "CNY") - Money(10000, "CNY") == Money(-100, "CNY")
    assert -Money(500, "CNY") == Money(-500, "CNY")
    assert Money(100, "CNY") < Money(101, "CNY") <= Money(101, "CNY")
    assert Money(9900, "CNY") * 3 == Money(29700, "CNY")
    # 999 fen × 0.5 = 499.5 fen → 500 (half-up)
    assert Money(999, "CNY") * Decimal("0.5") == Money(500, "CNY")
    assert Money.of_major("1234.5", "CNY") == Money(123450, "CNY")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a >= b,
    ],
)
def test_money_refuses_to_mix_currencies(operation) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CurrencyMismatchError, match=r"CNY.*USD"):
        operation(Money(100, "CNY"), Money(100, "USD"))


def test_money_refuses_floats_and_fractional_minor_units() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(100, "CNY") * 0.5  # type: ignore[operator]


def test_money_serialises_as_minor_units_and_code() -> None:
    assert msgspec.json.encode(Money(123450, "CNY")) == b'{"amount_minor":123450,"currency":"CNY"}'


@pytest.mark.parametrize(
    ("amount_minor", "currency", "text"),
    [
        (123450, "CNY", "¥1,234.50"),
        (-500, "CNY", "-¥5.00"),
        (0, "CNY", "¥0.00"),
        (99, "CNY", "¥0.99"),
        (1500, "JPY", "JP¥1,500"),
        (100000000, "USD", "$1,000,000.00"),
        (250, "MYR", "MYR 2.50"),
    ],
)
def test_format_minor_for_explanations(amount_minor: int, currency: str, text: str) -> None:
    assert format_minor(amount_minor, currency) == text
    assert Money(amount_minor, currency).format() == text


@pytest.mark.parametrize(
    ("price", "text"),
    [
        ("0.3", "¥0.30"),
        ("0.50", "¥0.50"),
        ("0.005", "¥0.005"),
        ("30", "¥30.00"),
        ("1200", "¥1,200.00"),
    ],
)
def test_format_price_keeps_sub_fen_precision(price: str, text: str) -> None:
    assert format_price(Decimal(price), "CNY") == text


@pytest.mark.parametrize(
    ("rate", "text"),
    [("0.40", "40%"), ("0.003", "0.30%"), ("0.125", "12.50%"), ("0.0025", "0.25%"), ("1", "100%")],
)
def test_format_rate_as_percentage(rate: str, text: str) -> None:
    assert format_rate(Decimal(rate)) == text


@pytest.mark.parametrize(
    ("amount", "weights", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),  # 33.33 each, the spare fen to the first
        (10, [1, 2], [3, 7]),  # 3.33 / 6.67: 7 has the larger remainder
        (-100, [1, 1, 1], [-34, -33, -33]),
        (9900, [Decimal("0.5"), Decimal("0.5")], [4950, 4950]),
        (1, [3, 1], [1, 0]),
        (0, [1, 2], [0, 0]),
    ],
)
def test_allocate_splits_without_losing_a_minor_unit(
    amount: int, weights: list[int | Decimal], parts: list[int]
) -> None:
    assert allocate(amount, weights) == parts
    assert sum(parts) == amount


def test_allocate_refuses_meaningless_weights() -> None:
    with pytest.raises(ValueError, match="at least one"):
        allocate(100, [])
    with pytest.raises(ValueError, match="not all be zero"):
        allocate(100, [0, 0])
    with pytest.raises(ValueError, match="negative"):
        allocate(100, [1, -1])


def test_money_allocate_keeps_the_currency() -> None:
    assert Money(100, "JPY").allocate([1, 1]) == [Money(50, "JPY"), Money(50, "JPY")]


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("2E+4", "20000"), ("1.7E+4", "17000"), ("-3E+2", "-300"), ("0E+3", "0"),
     ("20000", "20000"), ("99.00", "99.00"), ("0.345833", "0.345833")],
)  # fmt: skip
def test_quantities_are_written_without_an_exponent(stored: str, shown: str) -> None:
    value = plain_decimal(Decimal(stored))
    assert value == Decimal(stored)
    assert str(value) == shown
