# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""The finance page in a real headless Chromium (Debian's), driven over the DevTools protocol:
it loads through the login form, the chart is drawn, its figures match the API, and a
merchant key is refused. Saves the screenshot the README shows."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import uvicorn
from httpx import AsyncClient
from litestar import Litestar

from service.finance import reconcile
from service.finance.exports import ExportKind
from tests.integration.cdp import browser_page, chromium_path
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.finance_helpers import Book, build_book
from tests.integration.invoicing_helpers import close_pass, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_settings,
    sync,
)
from webhooks.reconcile_source import StripeLedgerSource

# The README's screenshot is refreshed only on request (KEFU_UPDATE_SCREENSHOTS=1), so a test
# run never leaves the work tree changed.
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "infra" / "finance-page.png"

# Every element that sticks out of the card (section) it is in, as "tag.class: px".
_OVERFLOWING = """
[...document.querySelectorAll('main section')].flatMap(card => {
  const box = card.getBoundingClientRect();
  return [...card.querySelectorAll('*')].filter(el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5);
  }).map(el => `${el.tagName}.${el.className.baseVal ?? el.className}: ${
    Math.round(el.getBoundingClientRect().right - box.right)}px`);
})
"""
# Headless Chromium here has no CJK font of its own: load the page's web font for its text
# before the screenshot (a browser with one shows the names without it).
_CJK_FONT_LOADED = (
    "document.fonts.load('14px \"Kefu CJK\"', document.body.innerText).then(fonts => fonts.length)"
)
# The chart's width beside the width inside its card's padding.
_CHART_AND_CARD = """
(() => {
  const chart = document.getElementById('mrr-chart');
  const card = chart.closest('section');
  const style = getComputedStyle(card);
  const inner = card.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return [chart.getBoundingClientRect().width, inner];
})()
"""


@pytest.fixture(scope="module")
async def book(client: AsyncClient, operator: Tenant) -> Book:
    return await build_book(client, operator)


@pytest.fixture(scope="module")
async def base_url(app: Litestar) -> AsyncIterator[str]:
    """The app served over real HTTP in this event loop (the database pool lives here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, access_log=False))  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_page_needs_a_login_and_refuses_merchants(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    client.cookies.clear()  # a session another test opened on this shared client
    anonymous = await client.get("/finance")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/finance/login"
    assert (await client.get("/finance", headers=book.a.headers)).status_code == 403
    refused = await client.post("/finance/login", data={"api_key": book.a.key})
    assert refused.status_code == 403
    assert "finance_session" not in refused.headers.get("set-cookie", "")
    forged = await client.get("/finance", headers={"cookie": "kefu_finance_session=e30.abc"})
    assert forged.status_code == 303
    export = await client.get("/finance/exports/invoices?from=2026-03-01&to=2026-03-31")
    assert export.status_code == 401


@pytest.mark.skipif(chromium_path() is None, reason="chromium missing: make test installs it")
async def test_finance_page_in_headless_chromium(
    tmp_path: Path,
    client: AsyncClient,
    operator: Tenant,
    book: Book,
    base_url: str,
    sync: Sync,
    stripe_client: AsyncClient,
) -> None:
    # A reconciliation to show: a merchant paid through the stand-in, then refunded in the
    # Stripe dashboard only.
    clock = await new_clock(stripe_client, operator, "2026-04-10T00:00:00+08:00")
    paid, _ = await signup_tenant(stripe_client, operator, plan="advanced", test_clock_id=clock,
                                  name="戊 Shop E")  # fmt: skip
    await add_card(sync, paid.merchant_id)  # so that Stripe charges it
    await close_pass(paid.merchant_id)
    await sync.settle()
    (charge,) = [c for c in sync.standin.objects("charge") if c["status"] == "succeeded"]
    sync.standin.dashboard.refund_charge(charge["id"], amount=1000)
    sync.standin.webhooks.wait_idle(timeout=5)
    sync.relay.take()
    run = await reconcile.run(
        StripeLedgerSource(sync.stripe_sync.gateway),  # type: ignore[arg-type]
        first_day=date(2026, 4, 1), last_day=date(2027, 12, 31), timezone="Asia/Shanghai",
        merchant_ids=sync.merchant_ids,
    )  # fmt: skip
    stored = await reconcile.store(run, now=datetime.now(UTC))

    async with browser_page() as page:
        # A merchant's key is refused.
        await page.send("Network.setExtraHTTPHeaders",
                        headers={"Authorization": f"Bearer {book.a.key}"})  # fmt: skip
        await page.goto(f"{base_url}/finance?month=2026-04&include_test=true")
        refusal = json.loads(await page.evaluate("document.body.innerText"))
        assert refusal["status"] == 403
        await page.send("Network.setExtraHTTPHeaders", headers={})

        # No key: the login form; an operator key logs in and lands on the page.
        await page.goto(f"{base_url}/finance?month=2026-04&include_test=true")
        assert await page.evaluate("location.pathname") == "/finance/login"
        await page.evaluate(
            f"document.getElementById('api_key').value = {json.dumps(operator.key)};"
            "document.querySelector('form').submit()"
        )
        await page.wait_for("Page.loadEventFired")
        # The merchants here are on test clocks: test data, counted on request.
        await page.goto(f"{base_url}/finance?month=2026-04&include_test=true")
        assert await page.evaluate("location.pathname") == "/finance"
        cookie_visible = await page.evaluate("document.cookie")
        assert "kefu_finance_session" not in cookie_visible  # HttpOnly

        # The chart is drawn: an SVG with a bar per tier and month that had MRR.
        bars = await page.evaluate(
            "[...document.querySelectorAll('#mrr-chart rect.bar')].map(r => "
            "[r.dataset.month, r.dataset.tier, Number(r.dataset.mrrMinor),"
            " r.getBoundingClientRect().height > 0])"
        )
        assert bars, "no bars drawn"
        assert all(drawn for *_, drawn in bars)
        assert {month for month, *_ in bars} <= {f"2025-{m:02d}" for m in range(5, 13)} | {
            "2026-01", "2026-02", "2026-03", "2026-04"}  # fmt: skip

        # The figures match the API.
        on_page = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#mrr [data-mrr-tier]')]"
            ".map(td => [td.dataset.mrrTier, Number(td.dataset.minor)]))"
        )
        mrr = await client.get("/v1/finance/mrr", params={"on": "2026-04-30", "include_test": "1"},
                               headers=operator.headers)  # fmt: skip
        assert on_page == {t["tier"]: t["mrr_minor"] for t in mrr.json()["tiers"]}
        march_bars = {tier: minor for month, tier, minor, _ in bars if month == "2026-04"}
        assert march_bars == on_page
        summary = (await client.get("/v1/finance/summary",
                                    params={"month": "2026-04", "include_test": "1"},
                                    headers=operator.headers)).json()  # fmt: skip
        billed = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-billed]')]"
            ".map(td => [td.dataset.billed, Number(td.dataset.minor)]))"
        )
        assert billed == {s["currency"]: s["billed_minor"] for s in summary}
        statuses = await page.evaluate(
            "[...document.querySelectorAll('[data-status]')].map(td => "
            "[td.dataset.currency, td.dataset.status, Number(td.textContent)])"
        )
        assert sorted(statuses) == sorted(
            [s["currency"], status, n] for s in summary
            for status, n in s["invoice_status_counts"].items()
        )  # fmt: skip
        links = await page.evaluate(
            "[...document.querySelectorAll('a.export')].map(a => a.getAttribute('href'))"
        )
        assert len(links) == len(ExportKind) * 4
        # The session cookie is HttpOnly and SameSite=Strict, and a download link works with
        # it alone (the page's CSP forbids scripts from fetching, so the test fetches).
        (cookie,) = (await page.send("Network.getCookies"))["cookies"]
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
            "kefu_finance_session", True, "Strict")  # fmt: skip
        download = await client.get(
            links[0], headers={"cookie": f"{cookie['name']}={cookie['value']}"}
        )
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        assert "Latest reconciliation" in await page.evaluate("document.body.innerText")
        shown = await page.evaluate(
            "[document.getElementById('reconciliation').dataset.mismatches,"
            " [...document.querySelectorAll('tr.mismatch td:nth-child(2)')]"
            ".map(td => td.textContent)]"
        )
        assert shown == [str(stored["mismatch_count"]), ["missing_here"]]
        # Whose it is: the merchant beside every invoice, payment and refund listed.
        merchants = await page.evaluate(
            "[...document.querySelectorAll('tr.mismatch td.merchant')].map(td => td.textContent)"
        )
        assert merchants == ["戊 Shop E"]

        # Nothing is wider than its card, and the chart fills its card, at several widths.
        for width in (1280, 900, 600):
            await page.send("Emulation.setDeviceMetricsOverride", width=width, height=1000,
                            deviceScaleFactor=1, mobile=False)  # fmt: skip
            assert await page.evaluate(_OVERFLOWING) == [], width
            chart, card = await page.evaluate(_CHART_AND_CARD)
            assert card - 1 <= chart <= card + 1, (width, chart, card)
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                        deviceScaleFactor=1, mobile=False)  # fmt: skip
        screenshot = (
            README_SCREENSHOT
            if os.environ.get("KEFU_UPDATE_SCREENSHOTS") == "1"
            else tmp_path / "finance-page.png"
        )
        await page.evaluate(_CJK_FONT_LOADED)
        await page.screenshot(screenshot)
    assert screenshot.stat().st_size > 10_000
