"""Base types for what crosses the HTTP boundary: strict input Structs and output Structs."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused with a 4xx naming them."""


class Output(msgspec.Struct, kw_only=True):
    """A response body."""


Email = Annotated[
    str,
    msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", examples=["ops@shop.cn"]),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", examples=["CNY"])]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["Asia/Shanghai"])]
