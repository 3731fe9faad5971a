"""Invoice documents for people: the seller's details from settings, the merchant's, the status,
a payment link while Stripe has one and something is due, lines in the merchant's zone; as HTML
and as a PDF whose text reads back out (Chinese names included); and finance opening them in a
real browser with its session. Saves the README's screenshot of a document."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from pypdf import PdfReader

from service.app import create_app
from service.db.engine import current
from service.settings import SellerSettings, Settings
from service.tenancy.principal import Role
from tests.integration.cdp import browser_page, chromium_path
from tests.integration.conftest import Tenant, issue_key, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, invoices_of, new_clock

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "infra" / "invoice-document.png"
SELLER = SellerSettings(
    legal_name="杭州客服外包科技有限公司",
    address=("杭州市西湖区文三路 100 号 5 楼", "Hangzhou 310012, China"),
    tax_id="91330106MA2H0KEFU1",
    email="billing@kefu.example",
)
HOSTED = "https://invoice.stripe.com/i/acct_test/test_kefu_document"
SAFETY = ("content-security-policy", "x-content-type-options", "x-frame-options", "cache-control")


@pytest.fixture(scope="module")
def seller_app(settings: Settings, database: object) -> Litestar:
    return create_app(dataclasses.replace(settings, seller=SELLER))


@pytest.fixture(scope="module")
async def docs(seller_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=seller_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="module")
async def upgraded(client: httpx.AsyncClient, operator: Tenant) -> tuple[Tenant, dict[str, Any]]:
    """小李卡券店 on basic from 1 Nov, upgraded to advanced on 16 Nov at 14:37 (Shanghai): the
    upgrade's invoice (billed at once on advanced) credits basic and charges advanced for the
    rest of November; Stripe has given it a hosted payment page."""
    clock = await new_clock(client, operator, "2026-11-01T00:00:00+08:00")
    tenant, sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock,
                                      name="小李卡券店")  # fmt: skip
    await close_pass(tenant.merchant_id)
    await advance(client, operator, clock, "2026-11-16T14:37:00+08:00")
    changed = await client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                json={"plan": "advanced"}, headers=tenant.headers)  # fmt: skip
    assert changed.status_code == 200, changed.text
    await close_pass(tenant.merchant_id)
    upgrade = (await invoices_of(client, tenant))[-1]
    assert [line["kind"] for line in upgrade["lines"]] == ["proration", "proration"]
    await current().pool.execute(
        "UPDATE invoices SET hosted_invoice_url = $3 WHERE merchant_id = $1 AND id = $2",
        tenant.merchant_id, upgrade["id"], HOSTED,
    )  # fmt: skip
    return tenant, upgrade


def _pdf_text(content: bytes) -> str:
    """The PDF's text as one line: lines the layout wrapped are joined with a space."""
    pages = PdfReader(io.BytesIO(content)).pages
    return " ".join(" ".join(page.extract_text() for page in pages).split())


async def test_the_html_document_names_seller_merchant_status_lines_and_payment_link(
    docs: httpx.AsyncClient, upgraded: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, invoice = upgraded
    page = await docs.get(f"/v1/invoices/{invoice['id']}.html", headers=tenant.headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert all(page.headers.get(name) for name in SAFETY)
    html = page.text
    for text in (
        "杭州客服外包科技有限公司", "杭州市西湖区文三路 100 号 5 楼", "Tax ID 91330106MA2H0KEFU1",
        "billing@kefu.example", "小李卡券店", "Open: payment due", invoice["number"],
        "Asia/Shanghai (every date and time on this invoice)",
        "Basic monthly service fee (basic v1, unused time)",
        "credit for 14 d 9 h 23 min of 30 d (16 Nov 14:37 – 1 Dec, Asia/Shanghai)",
        "2026-11-16 14:37 – 2026-12-01",
    ):  # fmt: skip
        assert text in html, text
    assert f'href="{HOSTED}"' in html
    assert f'href="{invoice["id"]}.pdf"' in html


async def test_the_pdf_reads_back_the_same_document_chinese_names_included(
    docs: httpx.AsyncClient, upgraded: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, invoice = upgraded
    response = await docs.get(f"/v1/invoices/{invoice['id']}.pdf", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'inline; filename="invoice-{invoice["number"]}.pdf"'
    )
    assert all(response.headers.get(name) for name in SAFETY)
    assert response.content.startswith(b"%PDF-")
    text = _pdf_text(response.content)
    for expected in (
        f"Invoice {invoice['number']}", "Open: payment due", "杭州客服外包科技有限公司",
        "Tax ID 91330106MA2H0KEFU1", "小李卡券店", "Basic monthly service fee",
        "(16 Nov 14:37 – 1 Dec, Asia/Shanghai)", "Pay ¥", HOSTED, "Amount due",
    ):  # fmt: skip
        assert expected in text, (expected, text)
    reader = PdfReader(io.BytesIO(response.content))
    assert reader.metadata is not None
    assert reader.metadata.title == f"Invoice {invoice['number']}"
    # The CJK font travels inside the file (a subset of it), so any reader shows the names.
    fonts = [
        font.get_object()
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    ]  # fmt: skip
    assert any("NotoSansSC" in str(font["/BaseFont"]) for font in fonts)
    assert len(response.content) < 200_000  # a subset, not the 10 MB font


async def test_no_payment_link_once_nothing_is_due(
    docs: httpx.AsyncClient, operator: Tenant, upgraded: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, _invoice = upgraded
    first = (await invoices_of(docs, tenant))[0]  # November's fee: no Stripe page stored
    page = await docs.get(f"/v1/invoices/{first['id']}.html", headers=tenant.headers)
    assert page.status_code == 200
    assert 'id="payment"' not in page.text
    pdf = await docs.get(f"/v1/invoices/{first['id']}.pdf", headers=tenant.headers)
    assert "Pay ¥" not in _pdf_text(pdf.content)


async def test_another_merchant_and_no_key_get_no_document(
    docs: httpx.AsyncClient, operator: Tenant, upgraded: tuple[Tenant, dict[str, Any]]
) -> None:
    _, invoice = upgraded
    other, _ = await signup_tenant(docs, operator, plan="basic", name="别家 Other Shop")
    for suffix in (".html", ".pdf"):
        stranger = await docs.get(f"/v1/invoices/{invoice['id']}{suffix}", headers=other.headers)
        assert stranger.status_code == 404
        anonymous = await docs.get(f"/v1/invoices/{invoice['id']}{suffix}")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
    # The JSON form never opens with a session cookie, only with a key.
    assert (await docs.get(f"/v1/invoices/{invoice['id']}")).status_code == 401


@pytest.fixture(scope="module")
async def served(seller_app: Litestar) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        seller_app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _log_in(page: Any, served: str, key: str) -> None:
    await page.goto(f"{served}/finance/login")
    await page.evaluate(
        f"document.getElementById('api_key').value = {json.dumps(key)};"
        "document.querySelector('form').submit()"
    )
    await page.wait_for("Page.loadEventFired")


@pytest.mark.skipif(chromium_path() is None, reason="chromium missing: make test installs it")
async def test_finance_opens_documents_in_a_browser_with_its_session(
    tmp_path: Path,
    docs: httpx.AsyncClient,
    operator: Tenant,
    upgraded: tuple[Tenant, dict[str, Any]],
    served: str,
) -> None:
    _, invoice = upgraded
    finance_key, _ = await issue_key(Role.OPERATOR, None, ["finance:read"])
    support_key, _ = await issue_key(Role.OPERATOR, None, ["support:read"])
    url = f"{served}/v1/invoices/{invoice['id']}"
    async with browser_page() as page:
        # Without a session, the browser is told to send a key.
        await page.goto(f"{url}.html")
        assert json.loads(await page.evaluate("document.body.innerText"))["status"] == 401

        # A support session is sent to the support view, where each look is audited.
        await _log_in(page, served, support_key)
        await page.goto(f"{url}.html")
        refusal = json.loads(await page.evaluate("document.body.innerText"))
        assert refusal["status"] == 403
        assert "/finance/support" in refusal["detail"]

        # A finance session opens the document, and the PDF beside it.
        await _log_in(page, served, finance_key)
        await page.goto(f"{url}.html")
        assert await page.evaluate("document.getElementById('status').textContent") == (
            "Open: payment due"
        )
        shown = await page.evaluate("document.body.innerText")
        assert "小李卡券店" in shown
        assert "杭州客服外包科技有限公司" in shown
        assert await page.evaluate("document.getElementById('payment').querySelector('a').href")
        cookies = (await page.send("Network.getCookies"))["cookies"]
        (cookie,) = [c for c in cookies if c["name"] == "kefu_finance_session"]
        assert (cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == ("/", True, "Strict")
        pdf = await docs.get(
            f"/v1/invoices/{invoice['id']}.pdf",
            headers={"cookie": f"{cookie['name']}={cookie['value']}"},
        )
        assert pdf.status_code == 200
        assert "小李卡券店" in _pdf_text(pdf.content)
        screenshot = (
            README_SCREENSHOT
            if os.environ.get("KEFU_UPDATE_SCREENSHOTS") == "1"
            else tmp_path / "invoice-document.png"
        )
        # Headless Chromium here has no CJK font: the page's own is loaded for its text.
        assert await page.evaluate(
            "document.fonts.load('16px \"Kefu CJK\"', document.body.innerText)"
            ".then(fonts => fonts.length)"
        )
        await page.screenshot(screenshot)
    assert screenshot.stat().st_size > 10_000


async def test_logging_out_clears_the_session_cookie_for_documents_too(
    docs: httpx.AsyncClient, operator: Tenant
) -> None:
    docs.cookies.clear()
    login = await docs.post("/finance/login", data={"api_key": operator.key},
                            headers={"Origin": "http://testserver"})  # fmt: skip
    assert login.status_code == 303
    assert "Path=/;" in login.headers["set-cookie"]
    token = login.cookies["kefu_finance_session"]
    out = await docs.post("/finance/logout", headers={
        "Origin": "http://testserver", "cookie": f"kefu_finance_session={token}"})  # fmt: skip
    cleared = out.headers.get_list("set-cookie")
    assert any("Path=/;" in c and "Max-Age=0" in c for c in cleared), cleared
    docs.cookies.clear()


async def test_support_opens_the_pdf_from_the_support_view_audited(
    docs: httpx.AsyncClient, upgraded: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, invoice = upgraded
    support_key, _ = await issue_key(Role.OPERATOR, None, ["support:read"])
    base = f"/finance/support/merchants/{tenant.merchant_id}/invoices/{invoice['id']}"
    headers = {"Authorization": f"Bearer {support_key}"}
    before = await current().pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE merchant_id = $1", tenant.merchant_id
    )
    pdf = await docs.get(f"{base}.pdf", headers=headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert "小李卡券店" in _pdf_text(pdf.content)
    page = await docs.get(base, headers=headers)
    assert page.status_code == 200
    assert f'href="{invoice["id"]}.pdf"' in page.text
    after = await current().pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE merchant_id = $1", tenant.merchant_id
    )
    assert after == before + 2
