"""Revenue figures against hand-worked numbers (see tests/integration/finance_helpers.py)."""

from __future__ import annotations

from datetime import date

import pytest
from httpx import AsyncClient

from service.finance import revenue
from tests.integration.conftest import Tenant
from tests.integration.finance_helpers import Book, build_book

TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
async def book(client: AsyncClient, operator: Tenant) -> Book:
    return await build_book(client, operator)


def _tiers(rows: list[revenue.TierMrr]) -> dict[str, tuple[int, int]]:
    return {row.tier: (row.mrr_minor, row.subscriptions) for row in rows}


async def test_mrr_per_tier_on_a_date(book: Book) -> None:
    mrr_book = await revenue.load_book(merchant_ids=book.merchant_ids[:3], includes_test=True)
    on = lambda day: mrr_book.mrr_at(revenue.end_of_day(day, TZ))  # noqa: E731
    # 03-10: A ¥99 + 40% = ¥138.60 (C still on trial: zero); B ¥300.
    assert _tiers(await on(date(2026, 3, 10))) == {"basic": (13860, 1), "advanced": (30000, 1)}
    # 03-31: A without the add-on ¥99, C out of trial ¥99; B still until period end.
    assert _tiers(await on(date(2026, 3, 31))) == {"basic": (19800, 2), "advanced": (30000, 1)}
    # 04-15: B canceled on 04-01, C paused.
    assert _tiers(await on(date(2026, 4, 15))) == {"basic": (9900, 1)}
    assert _tiers(await on(date(2026, 4, 30))) == {"basic": (19800, 2)}
    assert _tiers(await on(date(2026, 2, 28))) == {}


async def test_mrr_movement_per_month(book: Book) -> None:
    mrr_book = await revenue.load_book(merchant_ids=book.merchant_ids[:3], includes_test=True)
    moves = await mrr_book.movements(
        revenue.month_start(2026, 3, TZ), revenue.month_start(2026, 5, TZ), TZ
    )
    assert [(m.month, m.tier, m.kind, m.amount_minor, m.merchants) for m in moves] == [
        ("2026-03", "basic", "new", 13860 + 9900, 2),
        ("2026-03", "basic", "contraction", -3960, 1),
        ("2026-03", "advanced", "new", 30000, 1),
        ("2026-04", "basic", "churn", -9900, 1),
        ("2026-04", "basic", "reactivation", 9900, 1),
        ("2026-04", "advanced", "churn", -30000, 1),
    ]
    # MRR at the end of March = 0 at its start + the month's moves.
    assert sum(m.amount_minor for m in moves if m.month == "2026-03") == 19800 + 30000


async def test_billed_revenue_per_tier_and_charge_type(book: Book) -> None:
    rows = await revenue.billed_revenue(
        revenue.month_start(2026, 3, TZ), revenue.month_start(2026, 5, TZ), TZ,
        merchant_id=book.d.merchant_id, includes_test=True,
    )  # fmt: skip
    billed = {(r.month, r.tier, r.charge_type): r.amount_minor for r in rows if r.amount_minor}
    # Both invoices were finalized by the close pass on 04-03 (the clock's time): the signup
    # invoice with March's fee ¥1,200, and March's with 20,000 × ¥0.20, (¥350,000 − ¥100,000)
    # × 0.30% and April's fee ¥1,200. Nothing was finalized in March.
    assert billed == {
        ("2026-04", "custom", "fees"): 240000,
        ("2026-04", "custom", "per_order"): 400000,
        ("2026-04", "custom", "gmv_share"): 75000,
    }


async def test_mrr_by_month_series(book: Book) -> None:
    series = await revenue.mrr_by_month(date(2026, 3, 1), date(2026, 4, 30), TZ,
                                        merchant_id=book.b.merchant_id,
                                        includes_test=True)  # fmt: skip
    assert [(m.month, _tiers(m.tiers)) for m in series] == [
        ("2026-03", {"advanced": (30000, 1)}),
        ("2026-04", {}),
    ]
