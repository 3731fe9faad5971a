"""How deep a decoded Stripe event may nest (``wire.too_deep_at``): exactly the limit passes,
one level more is refused with the path to the first container past it, whatever mixes dicts
and lists."""

from __future__ import annotations

from typing import Any

import pytest

from service import wire


def _nested(levels: int, *, as_dict: bool) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value} if as_dict else [value]
    return value


@pytest.mark.parametrize("as_dict", [True, False])
def test_the_limit_passes_and_one_level_more_is_refused(as_dict: bool) -> None:
    assert wire.too_deep_at(_nested(32, as_dict=as_dict), 32) is None
    path = wire.too_deep_at(_nested(33, as_dict=as_dict), 32)
    assert path == ("$" + ".a" * 32 if as_dict else "$" + "[0]" * 32)


def test_a_deep_branch_beside_shallow_ones_is_found() -> None:
    document = {"id": "evt_1", "data": {"object": {"lines": [1, 2, {"x": [[[]]]}]}}, "n": [1]}
    assert wire.too_deep_at(document, 8) is None
    assert wire.too_deep_at(document, 7) == "$.data.object.lines[2].x[0][0]"
    assert wire.too_deep_at("text", 0) is None
    assert wire.too_deep_at({}, 0) == "$"
