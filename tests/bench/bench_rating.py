"""Benchmark: rate 10,000 merchants' monthly aggregates and print the time (target < 1 s).

Run: .venv/bin/python tests/bench/bench_rating.py  — prints figures, asserts nothing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from plans import (
    ContractOverrides,
    PlanVersion,
    UsageAggregate,
    calendar_period_containing,
    load_catalog,
    next_calendar_period,
    rate,
)

MERCHANTS = 10_000
TAX_RATE = Decimal("0.06")


@dataclass(frozen=True)
class Merchant:
    plan: PlanVersion
    addons: tuple[str, ...]
    overrides: ContractOverrides | None
    aggregates: dict[str, UsageAggregate]


def make_merchants(count: int) -> list[Merchant]:
    catalog = load_catalog()
    basic, advanced, custom = (catalog.latest(code) for code in ("basic", "advanced", "custom"))
    rng = random.Random(20261001)
    merchants = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5:
            plan, orders = basic, rng.randint(0, 3_000 * 2)
            addons: tuple[str, ...] = rng.choice(((), ("fast_response",), ("tooling_bundle",)))
            overrides = None
        elif roll < 0.85:
            plan, orders = advanced, rng.randint(3_000, 30_000)
            addons = rng.choice(((), ("complexity",), ("bring_your_own_system",)))
            overrides = None
        else:
            plan, orders = custom, rng.randint(15_000, 200_000)
            addons = rng.choice(((), ("emergency_response", "complexity")))
            overrides = rng.choice(
                (None, ContractOverrides(charges={"orders": {"unit_price": "0.18"}}))
            )
        gmv_minor = orders * rng.randint(1_000, 20_000)  # ¥10–¥200 an order
        hours = Decimal(rng.randint(0, 80)) / 2
        merchants.append(
            Merchant(
                plan=plan,
                addons=addons,
                overrides=overrides,
                aggregates={
                    "orders": UsageAggregate(
                        count=orders, quantity=Decimal(orders), gmv_minor=gmv_minor
                    ),
                    "support_hours": UsageAggregate(count=int(hours), quantity=hours),
                },
            )
        )
    return merchants


def main() -> None:
    merchants = make_merchants(MERCHANTS)
    usage_period = calendar_period_containing(
        datetime(2026, 10, 15, tzinfo=ZoneInfo("Asia/Shanghai")), "Asia/Shanghai"
    )
    fee_period = next_calendar_period(usage_period, "Asia/Shanghai")
    started = time.perf_counter()
    drafts = [
        rate(
            merchant.plan,
            addons=merchant.addons,
            overrides=merchant.overrides,
            usage_period=usage_period,
            fee_period=fee_period,
            aggregates=merchant.aggregates,
            tax_rate=TAX_RATE,
        )
        for merchant in merchants
    ]
    seconds = time.perf_counter() - started
    lines = sum(len(draft.lines) for draft in drafts)
    billed = sum(draft.total_minor for draft in drafts)
    print(f"rated {len(drafts):,} merchants ({lines:,} lines) in {seconds:.3f} s")
    print(f"{seconds / len(drafts) * 1e6:.1f} µs per merchant; target: under 1 s for 10,000")
    print(f"billed ¥{Decimal(billed).scaleb(-2):,.2f} in total (a checksum, not a check)")


if __name__ == "__main__":
    main()
