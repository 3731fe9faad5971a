"""Process tuning for a long-running server: the garbage collector, settled once started.

CPython's cyclic collector walks every tracked object it holds in the generation it collects.
A started server holds hundreds of thousands of objects that live as long as the process (the
app, its routes and OpenAPI model, imported modules), and each full collection walked them
all: pauses of tens of milliseconds that showed as the p99 of single-event requests (79 ms with
the defaults, 15–33 ms once settled; ``billing bench usage``). Once they are built (before the
connection pool starts: a pooled connection may be replaced, and frozen garbage is never
collected) they are moved to the permanent generation, which the collector skips, and the
youngest generation is collected after more allocations, so a request's short-lived objects
mostly die before a collection sees them. Cycles are still collected.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000
"""Allocations (less deallocations) between collections of the youngest generation (default
700). The older generations keep their default ratios."""


def settle_after_startup() -> None:
    """Collect once, then freeze everything alive into the permanent generation."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
