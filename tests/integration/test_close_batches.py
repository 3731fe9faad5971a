"""The period close closes different merchants' periods together, one transaction a batch: each
invoice is the one the merchant's preview showed, numbers stay gapless per merchant, a period
another worker holds is left to it, and a period invoiced meanwhile undoes only its batch, whose
other periods are then closed alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from httpx import AsyncClient

from service.db import engine as db_engine
from service.invoicing import close
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import (
    advance,
    as_previewed,
    close_pass,
    invoices_of,
    new_clock,
    numbered,
    upcoming_of,
)
from tests.integration.usage_helpers import event, send_batch

END_OF_MARCH = "2026-03-31T20:00:00+08:00"
MARCH_CLOSES = "2026-04-03T00:00:00+08:00"  # March's end + the 48 h grace window
GRACE = timedelta(hours=48)


async def _merchants_on_one_clock(
    client: AsyncClient, operator: Tenant, plans: list[str]
) -> tuple[list[Tenant], str]:
    """Merchants that signed up on March 1st on one clock, each with its first fee invoiced."""
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    tenants = []
    for n, plan in enumerate(plans):
        tenant, _ = await signup_tenant(
            client, operator, plan=plan, test_clock_id=clock, name=f"Batch shop {n}"
        )
        await close_pass(tenant.merchant_id)  # March's fee, billed at signup
        # Orders over the plan's included ones, with GMV, so every usage charge has work.
        orders = [
            event(f"o-{n}-{k}", "2026-03-10T10:00:00+08:00", quantity=40, gmv=25_000_000)
            for k in range(100)
        ]
        await send_batch(client, tenant, orders)
        tenants.append(tenant)
    return tenants, clock


async def _due_march(tenants: list[Tenant]) -> list[close.DuePeriod]:
    due = []
    for tenant in tenants:
        [march] = await close.due_periods(
            datetime.now(UTC), grace=GRACE, merchant_id=tenant.merchant_id
        )
        due.append(march)
    return due


async def _close(periods: list[close.DuePeriod]) -> list[tuple[Any, ...]]:
    return await close.close_periods(periods, system_now=datetime.now(UTC), tax_rate=Decimal(0))


async def test_merchants_closed_in_one_batch_get_the_invoices_their_previews_showed(
    client: AsyncClient, operator: Tenant
) -> None:
    tenants, clock = await _merchants_on_one_clock(
        client, operator, ["basic", "advanced", "custom"]
    )
    await advance(client, operator, clock, END_OF_MARCH)
    response = await client.post(
        "/v1/sla-reports",
        json={
            "merchant_id": str(tenants[1].merchant_id),
            "period_start": "2026-03-01T00:00:00+08:00",
            "csat": "0.85",
        },
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    previews = [await upcoming_of(client, tenant) for tenant in tenants]
    await advance(client, operator, clock, MARCH_CLOSES)

    results = await _close(await _due_march(tenants))

    assert [reason for _, _, reason in results] == ["invoiced"] * 3
    for tenant, [preview] in zip(tenants, previews, strict=True):
        invoices = await invoices_of(client, tenant)
        assert as_previewed(invoices[-1]) == as_previewed(preview)
        assert numbered(invoices)[1] == [1, 2]  # the first fee, then March
    advanced_march = (await invoices_of(client, tenants[1]))[-1]
    assert "sla_csat_below_target" in {line["charge_code"] for line in advanced_march["lines"]}
    assert {invoice.merchant_id for _, invoice, _ in results if invoice} == {
        tenant.merchant_id for tenant in tenants
    }


async def test_a_period_another_worker_holds_is_left_to_it_and_the_others_are_closed(
    client: AsyncClient, operator: Tenant
) -> None:
    tenants, clock = await _merchants_on_one_clock(client, operator, ["basic"] * 3)
    await advance(client, operator, clock, MARCH_CLOSES)
    due = await _due_march(tenants)
    other_worker = await db_engine.current().pool.acquire()
    try:
        async with other_worker.transaction():
            await other_worker.execute(
                "SELECT 1 FROM subscription_periods WHERE merchant_id = $1 AND id = $2 FOR UPDATE",
                due[1].merchant_id,
                due[1].id,
            )
            results = await _close(due)
    finally:
        await db_engine.current().pool.release(other_worker)

    assert [reason for _, _, reason in results] == ["invoiced", close.TAKEN, "invoiced"]
    assert [len(await invoices_of(client, tenant)) for tenant in tenants] == [2, 1, 2]
    await close_pass(tenants[1].merchant_id)  # the next pass closes it
    assert numbered(await invoices_of(client, tenants[1]))[1] == [1, 2]


async def test_a_period_invoiced_meanwhile_undoes_its_batch_and_the_rest_close_alone_gapless(
    client: AsyncClient, operator: Tenant
) -> None:
    tenants, clock = await _merchants_on_one_clock(client, operator, ["basic", "advanced"] * 2)
    await advance(client, operator, clock, MARCH_CLOSES)
    due = await _due_march(tenants)
    # Another worker made the third merchant's invoice after this one looked for due periods.
    [(_, made_elsewhere, _)] = await _close([due[2]])
    assert made_elsewhere is not None

    results = await _close(due)

    assert [reason for _, _, reason in results] == [
        "invoiced",
        "invoiced",
        close.ALREADY_INVOICED,
        "invoiced",
    ]
    for tenant in tenants:
        invoices = await invoices_of(client, tenant)
        assert numbered(invoices)[1] == [1, 2]  # no number lost to the batch undone
        assert [i["kind"] for i in invoices] == ["immediate", "period"]


async def test_a_pass_reading_a_few_due_periods_at_a_time_invoices_them_all_in_period_order(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2025-06-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, test_clock_id=clock)
    await advance(client, operator, clock, "2026-01-03T00:00:00+08:00")  # seven months ended

    summary = await close.run_pass(
        system_now=datetime.now(UTC),
        grace=GRACE,
        tax_rate=Decimal(0),
        merchant_id=tenant.merchant_id,
        batch=2,
        chunk=1,
    )

    assert summary.invoices_made == 8  # the first fee + seven months
    assert not summary.skips
    invoices = await invoices_of(client, tenant)
    periods = sorted(
        (i for i in invoices if i["kind"] == "period"), key=lambda i: i["period_start"]
    )
    assert [int(i["number"].rsplit("-", 1)[1]) for i in periods] == list(range(2, 9))
    assert (
        await close.due_periods(datetime.now(UTC), grace=GRACE, merchant_id=tenant.merchant_id)
        == []
    )
