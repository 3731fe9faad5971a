"""The upcoming invoice is the invoice: what ``GET /v1/invoices/upcoming`` and a change quote
show is what the close then makes, to the fen — SLA credits recorded for the period, a trial
and its first period's fee, the credit balance — and a preview leaves nothing behind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient

from service.db.engine import current as current_database
from service.invoicing import invoices as invoice_store
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import (
    advance,
    amounts,
    as_previewed,
    close_pass,
    invoices_of,
    new_clock,
    upcoming_of,
)

MARCH = "2026-03-01T00:00:00+08:00"
END_OF_MARCH = "2026-03-31T20:00:00+08:00"
MARCH_CLOSES = "2026-04-03T00:00:00+08:00"  # March's end + the 48 h grace window


async def _on_clock(
    client: AsyncClient, operator: Tenant, plan: str, at: str = MARCH, **extra: Any
) -> tuple[Tenant, dict[str, Any], str]:
    clock = await new_clock(client, operator, at)
    tenant, sub = await signup_tenant(client, operator, plan=plan, test_clock_id=clock, **extra)
    return tenant, sub, clock


async def _report(client: AsyncClient, operator: Tenant, tenant: Tenant, **figures: Any) -> None:
    response = await client.post(
        "/v1/sla-reports",
        json={"merchant_id": str(tenant.merchant_id), "period_start": MARCH, **figures},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["applied_as"] == "pending"


async def _made_since(
    client: AsyncClient, tenant: Tenant, before: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    known = {invoice["id"] for invoice in before}
    return [i for i in await invoices_of(client, tenant) if i["id"] not in known]


async def test_a_fault_recorded_for_the_period_is_credited_in_the_preview_as_on_the_invoice(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, _, clock = await _on_clock(client, operator, "basic", trial_days=0)
    await close_pass(tenant.merchant_id)  # March's fee, billed at signup
    before = await invoices_of(client, tenant)
    await advance(client, operator, clock, END_OF_MARCH)
    await _report(client, operator, tenant, faults=[{"reference": "F-1", "unresolved_hours": "30"}])
    [march] = await upcoming_of(client, tenant)
    # A fault unresolved 30 h gives March's ¥99 back; April's ¥99 is billed in advance.
    assert [(line["charge_code"], line["amount_minor"]) for line in march["lines"]] == [
        ("orders", 0),
        ("sla_fault_unresolved", -9900),
        ("monthly_fee", 9900),
    ]
    assert march["total_minor"] == 0

    await advance(client, operator, clock, MARCH_CLOSES)
    await close_pass(tenant.merchant_id)
    [made] = await _made_since(client, tenant, before)
    assert as_previewed(made) == as_previewed(march)


async def test_csat_below_target_on_advanced_is_credited_in_the_preview_as_on_the_invoice(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, _, clock = await _on_clock(client, operator, "advanced", trial_days=0)
    await close_pass(tenant.merchant_id)
    before = await invoices_of(client, tenant)
    await advance(client, operator, clock, END_OF_MARCH)
    await _report(client, operator, tenant, csat="0.85")
    [march] = await upcoming_of(client, tenant)
    assert march["total_minor"] == 27000  # April's ¥300 less 10% of March's ¥300
    await advance(client, operator, clock, MARCH_CLOSES)
    await close_pass(tenant.merchant_id)
    [made] = await _made_since(client, tenant, before)
    assert as_previewed(made) == as_previewed(march)


async def test_during_a_trial_the_preview_is_the_first_periods_fee_then_the_trials_invoice(
    client: AsyncClient, operator: Tenant
) -> None:
    # 14 days from Nov 30 noon: the trial ends Dec 14 12:00 (Shanghai); 17.5 of December's 31
    # days are left: ¥99 × 17.5/31 = ¥55.887… → ¥55.89.
    tenant, _, clock = await _on_clock(
        client, operator, "basic", at="2026-11-30T12:00:00+08:00", trial_days=14
    )
    await advance(client, operator, clock, "2026-12-05T09:00:00+08:00")
    first_fee, trial = await upcoming_of(client, tenant)
    assert (first_fee["kind"], first_fee["total_minor"]) == ("immediate", 5589)
    assert first_fee["period_start"] == "2026-12-14T04:00:00Z"
    assert first_fee["period_end"] == "2026-12-31T16:00:00Z"
    assert (trial["kind"], trial["total_minor"], trial["status"]) == ("period", 0, "paid")
    assert (trial["period_start"], trial["period_end"]) == (
        "2026-11-30T04:00:00Z",
        "2026-12-14T04:00:00Z",
    )

    await advance(client, operator, clock, "2026-12-16T12:00:00+08:00")
    await close_pass(tenant.merchant_id)
    made = await invoices_of(client, tenant)
    assert [as_previewed(i) for i in made] == [as_previewed(first_fee), as_previewed(trial)]


async def test_right_after_signup_each_fee_is_previewed_once(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, _, _ = await _on_clock(client, operator, "basic", trial_days=0)
    first, march = await upcoming_of(client, tenant)
    assert amounts(first) == [("fee", "monthly_fee", 9900)]  # March's, billed at once
    assert amounts(march) == [("usage", "orders", 0), ("fee", "monthly_fee", 9900)]  # April's
    await close_pass(tenant.merchant_id)
    [made] = await invoices_of(client, tenant)
    assert as_previewed(made) == as_previewed(first)


async def _pay(invoice_id: str, amount_minor: int) -> None:
    async with current_database().engine.transaction():
        invoice = await invoice_store.get(None, uuid.UUID(invoice_id), lock=True)
        await invoice_store.record_payment(invoice, amount_minor, at=datetime.now(UTC))


async def _balance(client: AsyncClient, tenant: Tenant) -> dict[str, Any]:
    response = await client.get("/v1/credit-balance", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_preview_applies_the_credit_balance_without_moving_it(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock = await _on_clock(
        client, operator, "basic", trial_days=0, addons=["tooling_bundle"]
    )
    await close_pass(tenant.merchant_id)
    [first] = await invoices_of(client, tenant)
    await _pay(first["id"], first["total_minor"])  # March's ¥99 + ¥1,000 tooling, paid
    # The ¥1,000 tooling bundle dropped on March 16: 16 of March's 31 days unused, ¥516.13
    # back; with April's ¥99 that leaves ¥417.13 carried to the balance.
    await advance(client, operator, clock, "2026-03-16T00:00:00+08:00")
    dropped = await client.post(
        f"/v1/subscriptions/{sub['id']}/add-ons", json={"addons": []}, headers=tenant.headers
    )
    assert dropped.status_code == 200, dropped.text
    await advance(client, operator, clock, MARCH_CLOSES)
    await close_pass(tenant.merchant_id)
    balance = await _balance(client, tenant)
    assert balance["balance_minor"] == 41713

    before = await invoices_of(client, tenant)
    await advance(client, operator, clock, "2026-04-30T12:00:00+08:00")
    [april] = await upcoming_of(client, tenant)
    assert amounts(april)[-1] == ("credit", "credit_balance_applied", -9900)
    assert (april["total_minor"], april["credit_balance_carried_minor"]) == (0, 41713 - 9900)
    assert await _balance(client, tenant) == balance  # shown, not moved

    await advance(client, operator, clock, "2026-05-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    [made] = await _made_since(client, tenant, before)
    assert as_previewed(made) == as_previewed(april)
    assert (await _balance(client, tenant))["balance_minor"] == 41713 - 9900


async def test_a_change_quote_shows_the_invoices_the_close_makes_after_the_change(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock = await _on_clock(client, operator, "basic", trial_days=0)
    await close_pass(tenant.merchant_id)
    before = await invoices_of(client, tenant)
    await advance(client, operator, clock, "2026-03-16T00:00:00+08:00")
    events = [
        {"transaction_id": f"q-{n}", "metric": "orders", "quantity": 500,
         "occurred_at": "2026-03-10T10:00:00+08:00"}
        for n in range(8)
    ]  # fmt: skip
    sent = await client.post(
        "/v1/usage/events/batch", json={"events": events}, headers=tenant.headers
    )
    assert sent.status_code == 200, sent.text
    quote = await client.post(
        f"/v1/subscriptions/{sub['id']}/change-quote",
        json={"plan": "advanced", "addons": ["complexity"]},
        headers=tenant.headers,
    )
    assert quote.status_code == 200, quote.text
    quoted = quote.json()
    # Advanced bills its prorations at once: their own invoice first, then March's.
    proration, march = quoted["next_invoices"]
    assert proration["kind"] == "immediate"
    assert quoted["next_invoice_lines"] == proration["lines"]
    assert quoted["next_invoice_total_minor"] == proration["total_minor"]
    assert march["kind"] == "period"

    changed = await client.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={"plan": "advanced", "addons": ["complexity"]},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    await advance(client, operator, clock, MARCH_CLOSES)
    await close_pass(tenant.merchant_id)
    made = await _made_since(client, tenant, before)
    assert [as_previewed(i) for i in made] == [as_previewed(proration), as_previewed(march)]


_FOOTPRINT = """
SELECT (SELECT count(*) FROM invoices WHERE merchant_id = $1) AS invoices,
       (SELECT count(*) FROM invoice_lines WHERE merchant_id = $1) AS lines,
       (SELECT count(*) FROM credit_notes WHERE merchant_id = $1) AS credit_notes,
       (SELECT count(*) FROM credit_balance_movements WHERE merchant_id = $1) AS movements,
       (SELECT count(*) FROM stripe_outbox WHERE merchant_id = $1) AS outbox,
       (SELECT count(*) FROM audit_log WHERE merchant_id = $1) AS audit,
       (SELECT count(*) FROM subscription_periods WHERE merchant_id = $1) AS periods,
       (SELECT count(*) FROM subscription_events WHERE merchant_id = $1) AS events,
       (SELECT count(*) FROM pending_invoice_lines WHERE merchant_id = $1
                                                   AND invoice_id IS NULL) AS waiting,
       (SELECT last_number FROM invoice_number_sequences WHERE merchant_id = $1) AS numbered,
       (SELECT balance_minor FROM credit_balances WHERE merchant_id = $1) AS balance,
       (SELECT row(plan_code, addons, status, current_period_end, lock_version)::text
        FROM subscriptions WHERE merchant_id = $1) AS subscription
"""


async def test_previews_leave_nothing_behind(client: AsyncClient, operator: Tenant) -> None:
    tenant, sub, clock = await _on_clock(client, operator, "advanced", trial_days=3)
    await advance(client, operator, clock, "2026-03-02T00:00:00+08:00")
    footprint = await current_database().pool.fetchrow(_FOOTPRINT, tenant.merchant_id)
    # The trial's end, its first period's fee and March's close all happen inside the preview
    # (two invoices), and an upgrade inside the quote: none of it stays.
    assert len(await upcoming_of(client, tenant)) == 2
    quote = await client.post(
        f"/v1/subscriptions/{sub['id']}/change-quote",
        json={"plan": "custom"},
        headers=tenant.headers,
    )
    assert quote.status_code == 200, quote.text
    assert await current_database().pool.fetchrow(_FOOTPRINT, tenant.merchant_id) == footprint


async def test_nothing_upcoming_is_not_found_with_what_to_do(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock = await _on_clock(client, operator, "basic", trial_days=0)
    canceled = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel",
        json={"at_period_end": False},
        headers=tenant.headers,
    )
    assert canceled.status_code == 200, canceled.text
    await advance(client, operator, clock, "2026-03-05T00:00:00+08:00")
    assert len(await upcoming_of(client, tenant)) == 2  # the first fee, the (short) period
    await close_pass(tenant.merchant_id)
    response = await client.get("/v1/invoices/upcoming", headers=tenant.headers)
    assert response.status_code == 404
    assert "every period has its invoice" in response.json()["detail"]
