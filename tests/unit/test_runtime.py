"""The server's garbage-collector settling: startup objects frozen, young collections rarer."""

import gc
from collections.abc import Iterator

import pytest

from service import runtime


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_what_is_alive_and_keeps_older_ratios(restored_gc: None) -> None:
    _, middle, old = gc.get_threshold()
    long_lived = [[index] for index in range(1_000)]
    runtime.settle_after_startup()
    assert gc.get_freeze_count() >= len(long_lived)
    assert gc.get_threshold() == (runtime.YOUNG_THRESHOLD, middle, old)
    assert gc.isenabled()  # cycles are still collected
