"""Support staff (an operator key with `support:read`) read a named merchant's upcoming invoice,
usage and subscription, each read audited; and use the support view in a real headless
Chromium: find a merchant, see its subscriptions, history, usage, invoices and their documents,
Stripe sync with parked rows, and the audit trail."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from service.db.engine import current as current_database
from service.tenancy.principal import Role
from tests.integration.cdp import browser_page, chromium_path
from tests.integration.conftest import Tenant, issue_key, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, new_clock


@pytest.fixture(scope="module")
async def support(database: Any) -> Tenant:
    secret, key_id = await issue_key(Role.OPERATOR, None, ["support:read"])
    return Tenant(merchant_id=uuid.UUID(int=0), key=secret, key_id=key_id)


@pytest.fixture(scope="module")
async def shop(client: AsyncClient, operator: Tenant) -> tuple[Tenant, dict[str, Any]]:
    """A merchant a month into its subscription: an invoice, usage, an outbox row."""
    clock = await new_clock(client, operator, "2026-05-01T00:00:00+08:00")
    tenant, subscription = await signup_tenant(
        client,
        operator,
        plan="basic",
        test_clock_id=clock,
        name=f"支持 Shop {uuid.uuid4().hex[:6]}",
    )
    await advance(client, operator, clock, "2026-05-20T00:00:00+08:00")
    for n in range(3):
        sent = await client.post(
            "/v1/usage/events",
            json={"transaction_id": f"s-{n}", "metric": "orders",
                  "occurred_at": "2026-05-10T10:00:00+08:00", "quantity": 40},
            headers=tenant.headers,
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
    await close_pass(tenant.merchant_id)
    return tenant, subscription


async def _support_reads(merchant_id: uuid.UUID, key_id: uuid.UUID) -> list[str]:
    rows = await current_database().pool.fetch(
        "SELECT changes ->> 'read' AS read FROM audit_log WHERE merchant_id = $1"
        " AND action = 'support_read' AND actor_key_id = $2 ORDER BY id",
        merchant_id,
        key_id,
    )
    return [row["read"] for row in rows]


async def test_support_reads_a_named_merchant_and_every_read_is_audited(
    client: AsyncClient, support: Tenant, shop: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, subscription = shop
    named = {"merchant_id": str(tenant.merchant_id)}
    for path in ("/v1/invoices/upcoming", "/v1/usage/summary"):
        own = await client.get(path, headers=tenant.headers)
        assert own.status_code == 200, own.text
        read = await client.get(path, params=named, headers=support.headers)
        assert read.status_code == 200, read.text
        assert read.json() == own.json()
    listed = await client.get("/v1/subscriptions", params=named, headers=support.headers)
    assert [s["id"] for s in listed.json()] == [subscription["id"]]
    one = await client.get(f"/v1/subscriptions/{subscription['id']}", headers=support.headers)
    assert one.status_code == 200
    assert await _support_reads(tenant.merchant_id, support.key_id) == [
        "upcoming_invoice", "usage_summary", "subscriptions", "subscription"]  # fmt: skip


async def test_support_reads_need_the_scope_and_a_merchant_and_change_nothing(
    client: AsyncClient, support: Tenant, shop: tuple[Tenant, dict[str, Any]]
) -> None:
    tenant, subscription = shop
    named = {"merchant_id": str(tenant.merchant_id)}
    reader_secret, _ = await issue_key(Role.OPERATOR, None, ["billing:read"])
    refused = await client.get("/v1/invoices/upcoming", params=named,
                               headers={"Authorization": f"Bearer {reader_secret}"})  # fmt: skip
    assert refused.status_code == 403
    assert "support:read" in refused.json()["detail"]
    unnamed = await client.get("/v1/usage/summary", headers=support.headers)
    assert unnamed.status_code == 422
    assert unnamed.json()["field"] == "merchant_id"
    unknown = await client.get("/v1/invoices/upcoming", params={"merchant_id": str(uuid.uuid4())},
                               headers=support.headers)  # fmt: skip
    assert unknown.status_code == 404
    write = await client.post(f"/v1/subscriptions/{subscription['id']}/change-plan",
                              json={"plan": "advanced"}, headers=support.headers)  # fmt: skip
    assert write.status_code == 403


async def _stripe_trouble(merchant_id: uuid.UUID) -> str:
    """The merchant in Stripe, a parked push and a parked event about it, whose errors carry
    markup (shown as text, never run)."""
    customer = f"cus_support_{uuid.uuid4().hex[:8]}"
    pool = current_database().pool
    await pool.execute(
        "UPDATE merchants SET stripe_customer_id = $2 WHERE id = $1", merchant_id, customer
    )
    await pool.execute(
        "UPDATE stripe_outbox SET status = 'parked', last_error = $2 WHERE merchant_id = $1",
        merchant_id,
        "<b>No such price</b>: items[0][price]",
    )
    await pool.execute(
        "INSERT INTO stripe_inbox (event_id, event_type, event_created, payload, status,"
        " attempts, last_error) VALUES ($1, 'invoice.paid', 1, $2::jsonb, 'parked', 8, $3)",
        f"evt_{uuid.uuid4().hex[:12]}",
        json.dumps({"data": {"object": {"object": "invoice", "customer": customer}}}),
        "<script>alert(1)</script> no invoice",
    )
    return customer


@pytest.mark.skipif(chromium_path() is None, reason="chromium missing: make test installs it")
async def test_support_view_in_headless_chromium(
    client: AsyncClient, support: Tenant, shop: tuple[Tenant, dict[str, Any]], served_url: str
) -> None:
    tenant, subscription = shop
    customer = await _stripe_trouble(tenant.merchant_id)
    name = (await client.get("/v1/merchants/me", headers=tenant.headers)).json()["name"]
    own_invoices = (await client.get("/v1/invoices", headers=tenant.headers)).json()
    assert own_invoices

    async with browser_page() as page:
        await page.goto(f"{served_url}/finance/support")
        assert await page.evaluate("location.pathname") == "/finance/login"
        await page.evaluate(
            f"document.getElementById('api_key').value = {json.dumps(support.key)};"
            "document.querySelector('form').submit()"
        )
        await page.wait_for("Page.loadEventFired")
        assert await page.evaluate("location.pathname") == "/finance/support"
        # A support key's session does not open the finance page.
        await page.goto(f"{served_url}/finance")
        assert json.loads(await page.evaluate("document.body.innerText"))["status"] == 403

        # Find the merchant by a part of its name, then open it.
        await page.goto(f"{served_url}/finance/support?q={name.split()[-1]}")
        links = await page.evaluate(
            "[...document.querySelectorAll('a.merchant')].map(a => [a.textContent, a.href])"
        )
        assert [text for text, _ in links] == [name]
        await page.goto(links[0][1])
        assert await page.evaluate("document.getElementById('merchant-name').dataset.merchantId"
                                   ) == str(tenant.merchant_id)  # fmt: skip
        text = await page.evaluate("document.body.innerText")
        assert subscription["id"] in text
        assert customer in text
        history = await page.evaluate("document.querySelectorAll('#history tr.event').length")
        assert history >= 1
        usage = await page.evaluate(
            "[...document.querySelectorAll('#usage tr.usage')].map(r => r.cells[1].textContent"
            " + ' ' + r.cells[3].textContent)"
        )
        assert "orders 120" in usage
        numbers = await page.evaluate(
            "[...document.querySelectorAll('#invoices tr.invoice')]"
            ".map(r => r.cells[0].textContent)"
        )
        assert sorted(numbers) == sorted(i["number"] for i in own_invoices)
        parked = await page.evaluate(
            "[...document.querySelectorAll('#outbox tr.parked, #webhooks tr.parked')]"
            ".map(r => r.closest('table').id)"
        )
        assert "outbox" in parked
        assert "webhooks" in parked
        # Stripe's and our error texts are shown as text, never as markup or script.
        assert "<b>No such price</b>: items[0][price]" in text
        assert "<script>alert(1)</script> no invoice" in text
        assert await page.evaluate("document.querySelectorAll('main b, main script').length") == 0
        audit = await page.evaluate(
            "[...document.querySelectorAll('#audit tr.entry')].map(r => r.cells[2].textContent)"
        )
        assert "support_read" in audit

        # An invoice's document, as the merchant gets it.
        document = await page.evaluate("document.querySelector('a.document').href")
        await page.goto(document)
        shown = await page.evaluate("document.body.innerText")
        assert any(number in shown for number in numbers)

    # A merchant's key is refused the view; every look was audited.
    refused = await client.get(f"/finance/support/merchants/{tenant.merchant_id}",
                               headers=tenant.headers)  # fmt: skip
    assert refused.status_code == 403
    reads = await _support_reads(tenant.merchant_id, support.key_id)
    assert "support_view" in reads
    assert "invoice_document" in reads
