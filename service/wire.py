"""Base types for what crosses the HTTP boundary: strict input Structs and output Structs."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Final

import msgspec

from plans.money import plain_decimal


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused with a 4xx naming them."""


class Output(msgspec.Struct, kw_only=True):
    """A response body. Its ``Decimal`` fields are written out plain (``20000``, never the
    ``2E+4`` that PostgreSQL's numerics can arrive as): JSON carries a Decimal as its ``str``."""

    def __post_init__(self) -> None:
        for name in _decimal_fields(type(self)):
            value = getattr(self, name)
            if isinstance(value, Decimal):
                setattr(self, name, plain_decimal(value))


_DECIMAL_FIELDS: Final[dict[type, tuple[str, ...]]] = {}


def _decimal_fields(cls: type[Output]) -> tuple[str, ...]:
    """The fields of an output type that may hold a Decimal (looked up once per type)."""
    names = _DECIMAL_FIELDS.get(cls)
    if names is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        names = tuple(field.name for field in info.fields if _may_be_decimal(field.type))
        _DECIMAL_FIELDS[cls] = names
    return names


def _may_be_decimal(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.Metadata):  # Annotated with a description, examples
        return _may_be_decimal(info.type)
    if isinstance(info, msgspec.inspect.DecimalType):
        return True
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_may_be_decimal(member) for member in info.types)
    return False


Email = Annotated[
    str,
    msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", examples=["ops@shop.cn"]),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", examples=["CNY"])]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["Asia/Shanghai"])]
