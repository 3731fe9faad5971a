"""`billing demo` drives the whole flow; its invoices carry the figures it promises."""

import io

from litestar import Litestar
from rich.console import Console

from service.db.engine import Database
from service.demo import print_invoices, run
from service.settings import Settings


async def test_demo_makes_every_tiers_invoices(
    app: Litestar, settings: Settings, database: Database
) -> None:
    console = Console(file=io.StringIO(), width=120)
    invoices = await run(settings, app, console)
    by_tier: dict[str, list[int]] = {}
    for invoice in invoices:
        by_tier.setdefault(invoice["tier"], []).append(invoice["total_minor"])
    # basic: Sept fee+40% at signup, Sept usage + Oct fee, the upgrade's proration, Oct close.
    assert by_tier["basic"] == [13860, 43860, 8330, 30000]
    # advanced: ¥300 at signup; 1,000 orders over + Oct fee − 10% CSAT credit; Nov fee.
    assert by_tier["advanced"] == [30000, 57000, 30000]
    # custom (¥0.15/order, 0.25% GMV): Sept ¥3,000 + ¥625 + 12 h × ¥30 + Oct fee ¥1,200;
    # Oct 18,000 × ¥0.15 = ¥2,700 + (¥270,000 − ¥100,000) × 0.25% = ¥425 + Nov fee ¥1,200
    # + the 500 late September orders × ¥0.15 = ¥75.
    assert by_tier["custom"] == [120000, 518500, 440000]
    print_invoices(console, invoices)
    printed = console.file.getvalue()
    assert "Late usage for 2026-09: +500 orders" in printed
    assert "CSAT 87% below 90%" in printed
