"""Period close against hand-worked invoices: basic with an add-on, a late event and an SLA
credit note; advanced with an SLA credit line; custom with the GMV fee. Then credit notes,
voids and the invoice document."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient

from service.db.engine import Database
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import (
    advance,
    amounts,
    close_pass,
    invoices_of,
    new_clock,
    numbered,
)

MARCH = "2026-03-01T00:00:00+08:00"
END_OF_MARCH = "2026-03-31T23:59:00+08:00"


async def _orders(
    client: AsyncClient,
    tenant: Tenant,
    prefix: str,
    *,
    events: int,
    per_event: int,
    at: str,
    gmv_per_event: int | None = None,
) -> None:
    batch: list[dict[str, Any]] = []
    for n in range(events):
        event: dict[str, Any] = {
            "transaction_id": f"{prefix}-{n}",
            "metric": "orders",
            "occurred_at": at,
            "quantity": per_event,
        }
        if gmv_per_event is not None:
            event["gmv"] = {"amount_minor": gmv_per_event, "currency": "CNY"}
        batch.append(event)
    response = await client.post(
        "/v1/usage/events/batch", json={"events": batch}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text


async def _merchant(
    client: AsyncClient, operator: Tenant, plan: str, **extra: Any
) -> tuple[Tenant, str]:
    clock = await new_clock(client, operator, MARCH)
    tenant, _ = await signup_tenant(client, operator, plan=plan, test_clock_id=clock, **extra)
    return tenant, clock


async def test_basic_with_fast_response_late_event_and_sla_credit_note(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, clock = await _merchant(client, operator, "basic", addons=["fast_response"])
    await advance(client, operator, clock, END_OF_MARCH)
    await _orders(client, tenant, "mar", events=36, per_event=100, at="2026-03-15T12:00:00+08:00")
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")  # March + 48 h grace
    await close_pass(tenant.merchant_id)
    first, march = await invoices_of(client, tenant)
    # At signup, March's fee in advance: ¥99 + 40% fast response ¥39.60.
    assert first["kind"] == "immediate"
    assert amounts(first) == [("fee", "monthly_fee", 9900), ("addon", "fast_response", 3960)]
    # March: 3,600 orders − 3,000 included = 600 × ¥0.50 = ¥300; then April's fee in advance.
    assert amounts(march) == [
        ("usage", "orders", 30000),
        ("fee", "monthly_fee", 9900),
        ("addon", "fast_response", 3960),
    ]
    assert march["total_minor"] == 43860
    assert numbered([first, march])[1] == [1, 2]
    assert march["status"] == "open"
    usage_line = march["lines"][0]
    assert usage_line["explanation"] == "3,600 orders: 3,000 included, 600 × ¥0.50"

    # A late March event after March was invoiced, and an SLA report for March: a fault left
    # unresolved 30 h refunds March's fees in full (¥138.60) as a credit note on March.
    await _orders(client, tenant, "late", events=1, per_event=200, at="2026-03-31T23:00:00+08:00")
    report = await client.post(
        "/v1/sla-reports",
        json={
            "merchant_id": str(tenant.merchant_id),
            "period_start": MARCH,
            "faults": [{"reference": "INC-7", "unresolved_hours": "30"}],
        },
        headers=operator.headers,
    )
    assert report.status_code == 201, report.text
    assert report.json()["applied_as"] == "credit_note"
    march_now = (await client.get(f"/v1/invoices/{march['id']}", headers=tenant.headers)).json()
    assert [(n["amount_minor"], n["reason"], n["kind"]) for n in march_now["credit_notes"]] == [
        (13860, "sla_credit", "pre_payment")
    ]
    assert march_now["amount_due_minor"] == 43860 - 13860
    assert march_now["total_minor"] == 43860  # finalized: the invoice itself never changes
    assert amounts(march_now) == amounts(march)

    await advance(client, operator, clock, "2026-05-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    april = (await invoices_of(client, tenant))[-1]
    # April: no April orders; May's fee; the late 200 March orders: +200 × ¥0.50 = ¥100.
    assert amounts(april) == [
        ("usage", "orders", 0),
        ("fee", "monthly_fee", 9900),
        ("addon", "fast_response", 3960),
        ("adjustment", "orders", 10000),
    ]
    assert "2026-03" in april["lines"][3]["explanation"]
    assert april["total_minor"] == 23860


async def test_advanced_with_sla_credit_line(client: AsyncClient, operator: Tenant) -> None:
    tenant, clock = await _merchant(client, operator, "advanced")
    await advance(client, operator, clock, END_OF_MARCH)
    await _orders(client, tenant, "o", events=16, per_event=1000, at="2026-03-20T09:00:00+08:00")
    report = await client.post(
        "/v1/sla-reports",
        json={"merchant_id": str(tenant.merchant_id), "period_start": MARCH, "csat": "0.85"},
        headers=operator.headers,
    )
    assert report.status_code == 201, report.text
    assert report.json()["applied_as"] == "pending"
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    march = (await invoices_of(client, tenant))[-1]
    # 16,000 − 15,000 included = 1,000 × ¥0.30 = ¥300; April's ¥300 fee; CSAT 85% < 90%:
    # 10% of March's ¥300 fee = −¥30.
    assert amounts(march) == [
        ("usage", "orders", 30000),
        ("credit", "sla_csat_below_target", -3000),
        ("fee", "monthly_fee", 30000),
    ]
    assert march["total_minor"] == 57000


async def test_custom_with_gmv_fee(client: AsyncClient, operator: Tenant) -> None:
    tenant, clock = await _merchant(client, operator, "custom")
    await advance(client, operator, clock, END_OF_MARCH)
    # 20,000 orders with ¥350,000 of GMV in March.
    await _orders(
        client,
        tenant,
        "c",
        events=20,
        per_event=1000,
        gmv_per_event=1_750_000,
        at="2026-03-10T10:00:00+08:00",
    )
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    march = (await invoices_of(client, tenant))[-1]
    by_code = {line["charge_code"]: line["amount_minor"] for line in march["lines"]}
    # 20,000 × ¥0.20 = ¥4,000; (¥350,000 − ¥100,000) × 0.30% = ¥750; April's fee ¥1,200.
    assert by_code["orders"] == 400000
    assert by_code["gmv_fee"] == 75000
    assert by_code["monthly_fee"] == 120000
    assert march["total_minor"] == 595000


async def test_a_second_close_pass_changes_nothing(client: AsyncClient, operator: Tenant) -> None:
    tenant, clock = await _merchant(client, operator, "basic")
    await advance(client, operator, clock, "2026-06-03T00:00:00+08:00")
    first = await close_pass(tenant.merchant_id)
    assert first.invoices_made == 4  # signup + March, April, May
    again = await close_pass(tenant.merchant_id)
    assert again.invoices_made == 0
    assert numbered(await invoices_of(client, tenant))[1] == [1, 2, 3, 4]


async def test_credit_notes_never_exceed_the_invoice_and_voids(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, _ = await _merchant(client, operator, "advanced")
    await close_pass(tenant.merchant_id)
    (invoice,) = await invoices_of(client, tenant)
    url = f"/v1/invoices/{invoice['id']}/credit-notes"
    ok = await client.post(
        url, json={"amount_minor": 20000, "reason": "goodwill"}, headers=operator.headers
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["number"] == f"{invoice['number']}-CN1"
    too_much = await client.post(
        url, json={"amount_minor": 10001, "reason": "goodwill"}, headers=operator.headers
    )
    assert too_much.status_code == 422
    assert too_much.json()["field"] == "amount_minor"
    rest = await client.post(
        url, json={"amount_minor": 10000, "reason": "billing_error"}, headers=operator.headers
    )
    assert rest.status_code == 201
    paid = (await client.get(f"/v1/invoices/{invoice['id']}", headers=tenant.headers)).json()
    assert paid["status"] == "paid"  # fully credited: nothing due
    assert paid["amount_credited_minor"] == 30000
    void = await client.post(f"/v1/invoices/{invoice['id']}/void", headers=operator.headers)
    assert void.status_code == 409
    as_merchant = await client.post(
        url, json={"amount_minor": 1, "reason": "goodwill"}, headers=tenant.headers
    )
    assert as_merchant.status_code == 403
    listed = await client.get("/v1/credit-notes", headers=tenant.headers)
    assert [n["amount_minor"] for n in listed.json()] == [10000, 20000]

    other, _ = await _merchant(client, operator, "basic")
    await close_pass(other.merchant_id)
    (open_invoice,) = await invoices_of(client, other)
    voided = await client.post(f"/v1/invoices/{open_invoice['id']}/void", headers=operator.headers)
    assert voided.status_code == 200
    assert voided.json()["status"] == "void"


async def test_invoice_document(client: AsyncClient, operator: Tenant) -> None:
    tenant, _ = await _merchant(client, operator, "basic")
    await close_pass(tenant.merchant_id)
    (invoice,) = await invoices_of(client, tenant)
    page = await client.get(f"/v1/invoices/{invoice['id']}.html", headers=tenant.headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for text in (
        invoice["number"],
        "Basic monthly service fee",
        "¥99.00",
        "Signed-up shop",
        "Amount due",
    ):
        assert text in page.text
    assert "http" not in page.text.lower()  # self-contained: nothing loaded from elsewhere
    missing = await client.get(
        "/v1/invoices/00000000-0000-0000-0000-000000000000.html", headers=tenant.headers
    )
    assert missing.status_code == 404


async def test_invoice_list_filters(client: AsyncClient, operator: Tenant) -> None:
    tenant, clock = await _merchant(client, operator, "basic")
    await advance(client, operator, clock, "2026-05-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    march = await client.get("/v1/invoices", params={"period": "2026-03"}, headers=tenant.headers)
    assert {i["kind"] for i in march.json()} == {"immediate", "period"}
    april = await client.get("/v1/invoices", params={"period": "2026-04"}, headers=tenant.headers)
    assert len(april.json()) == 1
    paid = await client.get("/v1/invoices", params={"status": "paid"}, headers=tenant.headers)
    assert paid.json() == []
    by_operator = await client.get(
        "/v1/invoices", params={"merchant_id": str(tenant.merchant_id)}, headers=operator.headers
    )
    assert len(by_operator.json()) == 3


async def test_a_finalized_invoice_and_its_lines_never_change(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    # Guards in the database (row triggers that read only the row they fire on: Citus runs
    # them on the shard), whatever the code above them does.
    tenant, clock = await _merchant(client, operator, "basic")
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    invoice = await database.pool.fetchrow(
        "SELECT id, total_minor FROM invoices WHERE merchant_id = $1 AND status = 'open'"
        " ORDER BY period_start LIMIT 1",
        tenant.merchant_id,
    )
    edits = [
        ("UPDATE invoices SET total_minor = total_minor + 1", "its amounts and number"),
        ("UPDATE invoices SET number = 'KB-EDIT-000001'", "its amounts and number"),
        ("UPDATE invoice_lines SET amount_minor = 0", "never change once written"),
        ("DELETE FROM invoice_lines", "never change once written"),
    ]
    for edit, said in edits:
        with pytest.raises(asyncpg.RaiseError, match=said):
            await database.pool.execute(
                f"{edit} WHERE merchant_id = $1 AND {'invoice_id' if 'lines' in edit else 'id'}"
                " = $2",
                tenant.merchant_id,
                invoice["id"],
            )
    # What may change does: the amount paid of an open invoice, say.
    await database.pool.execute(
        "UPDATE invoices SET amount_paid_minor = 0 WHERE merchant_id = $1 AND id = $2",
        tenant.merchant_id,
        invoice["id"],
    )
    lines = await database.pool.fetchval(
        "SELECT count(*) FROM invoice_lines WHERE merchant_id = $1 AND invoice_id = $2",
        tenant.merchant_id,
        invoice["id"],
    )
    assert lines > 0
