"""Usage lands in the period containing its ``occurred_at``: late events in ended periods, early
ones in the period the worker has not opened yet; summaries and the upcoming invoice against
hand-worked figures."""

from __future__ import annotations

from datetime import datetime

from httpx import AsyncClient

from service.db.engine import current as current_database
from tests.integration.conftest import Tenant
from tests.integration.usage_helpers import (
    advance,
    at,
    counted,
    event,
    merchant_on_clock,
    send,
    send_batch,
    summary,
)


def _same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


async def test_a_late_event_lands_in_its_ended_period(
    client: AsyncClient, operator: Tenant
) -> None:
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-11-05T10:00:00")  # October has ended
    late = await send(client, shop, event("late-1", at("2026-10-20T08:00:00"), gmv=2_000))
    assert late.status_code == 201, late.text
    assert _same_instant(late.json()["period_start"], at("2026-10-10T09:00:00"))
    now = await send(client, shop, event("now-1", at("2026-11-04T08:00:00"), gmv=500))
    assert _same_instant(now.json()["period_start"], at("2026-11-01T00:00:00"))

    october = await summary(client, shop, "2026-10")
    assert [(p["period_start"], p["period_end"]) for p in october["periods"]] == [
        ("2026-10-10T01:00:00Z", "2026-10-31T16:00:00Z")
    ]
    assert october["by_metric"]["orders"]["count"] == 1
    assert october["by_metric"]["orders"]["gmv_minor"] == 2_000
    current = await summary(client, shop)
    assert current["by_metric"]["orders"]["gmv_minor"] == 500
    november = await summary(client, shop, "2026-11")
    assert november["by_metric"]["orders"]["gmv_minor"] == 500
    assert (await summary(client, shop, "2026-09"))["periods"] == []


async def test_an_event_past_the_period_end_counts_in_the_next_period_before_it_is_opened(
    client: AsyncClient, operator: Tenant
) -> None:
    shop, subscription, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    # The clock moves past the period end without anything rolling the subscription forward
    # (as when the worker has not run yet).
    await current_database().pool.execute(
        "UPDATE test_clocks SET frozen_time = $1 WHERE id = $2::uuid",
        datetime.fromisoformat(at("2026-11-02T10:00:00")),
        clock_id,
    )
    early = await send(client, shop, event("next-1", at("2026-11-02T08:00:00"), quantity=7))
    assert early.status_code == 201, early.text
    assert _same_instant(early.json()["period_start"], at("2026-11-01T00:00:00"))
    assert (await summary(client, shop))["by_metric"]["orders"]["quantity"] == "7"
    # When the period is opened, it is the one the event was counted in.
    await advance(client, operator, clock_id, "2026-11-02T11:00:00")
    subs = await client.get(f"/v1/subscriptions/{subscription['id']}", headers=shop.headers)
    assert _same_instant(subs.json()["current_period_start"], at("2026-11-01T00:00:00"))
    assert (await summary(client, shop))["by_metric"]["orders"]["quantity"] == "7"
    assert (await summary(client, shop, "2026-10"))["by_metric"]["orders"]["count"] == 0


async def test_summary_sums_each_metric_of_the_period(
    client: AsyncClient, operator: Tenant
) -> None:
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    await advance(client, operator, clock_id, "2026-10-25T00:00:00")
    events = [
        event(f"o-{i}", at("2026-10-05T10:00:00"), quantity=2, gmv=12_345) for i in range(10)
    ] + [
        event("h-1", at("2026-10-06T10:00:00"), metric="support_hours", quantity="1.25"),
        event("h-2", at("2026-10-07T10:00:00"), metric="support_hours", quantity="0.5"),
    ]
    assert (await send_batch(client, shop, events))["accepted"] == 12
    usage = await summary(client, shop)
    assert usage["currency"] == "CNY"
    assert usage["period"] == "current"
    assert usage["by_metric"]["orders"] == {
        "metric": "orders",
        "count": 10,
        "quantity": "20",
        "gmv_minor": 123_450,
    }
    assert usage["by_metric"]["support_hours"] == {
        "metric": "support_hours",
        "count": 2,
        "quantity": "1.75",
        "gmv_minor": 0,
    }
    assert usage == {**(await summary(client, shop, "2026-10")), "period": "current"}
    totals = await counted(shop.merchant_id)
    assert totals.raw == totals.aggregated


async def test_summary_of_a_month_with_a_trial_sums_both_periods(
    client: AsyncClient, operator: Tenant
) -> None:
    from tests.integration.conftest import signup_tenant
    from tests.integration.usage_helpers import new_clock

    clock_id = await new_clock(client, operator, "2026-10-03T00:00:00")
    shop, _ = await signup_tenant(
        client, operator, plan="basic", trial_days=14, test_clock_id=clock_id
    )
    await advance(client, operator, clock_id, "2026-10-20T00:00:00")  # the trial ended on the 17th
    body = await send_batch(
        client,
        shop,
        [
            event("t-trial", at("2026-10-10T00:00:00")),
            event("t-paid", at("2026-10-18T00:00:00"), quantity=3),
        ],
    )
    assert body["accepted"] == 2
    october = await summary(client, shop, "2026-10")
    assert len(october["periods"]) == 2
    assert october["by_metric"]["orders"]["quantity"] == "4"
    assert (await summary(client, shop))["by_metric"]["orders"]["quantity"] == "3"


async def test_summary_without_a_subscription_is_not_found(
    client: AsyncClient, tenant: Tenant
) -> None:
    response = await client.get("/v1/usage/summary", headers=tenant.headers)
    assert response.status_code == 404
    bad = await client.get(
        "/v1/usage/summary", params={"period": "2026-13"}, headers=tenant.headers
    )
    assert bad.status_code == 400


async def test_upcoming_invoice_rates_the_period_usage_by_the_plan(
    client: AsyncClient, operator: Tenant
) -> None:
    # Basic: ¥99 a month with 3,000 orders included, then ¥0.50 an order.
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    await advance(client, operator, clock_id, "2026-10-28T00:00:00")
    events = [event(f"u-{i:04d}", at("2026-10-15T10:00:00"), gmv=1_000) for i in range(3_500)]
    events.append(event("u-bulk", at("2026-10-16T10:00:00"), quantity=100))
    assert (await send_batch(client, shop, events))["accepted"] == 3_501
    response = await client.get("/v1/invoices/upcoming", headers=shop.headers)
    assert response.status_code == 200, response.text
    upcoming = response.json()
    # No close pass ran yet: October's fee, billed at signup, is still to be invoiced on its
    # own, then October's invoice. Each fee once (never ¥198 of fees on one invoice).
    first, october = upcoming["invoices"]
    assert {k: v for k, v in upcoming.items() if k not in ("invoices", "timezone")} == first
    assert upcoming["timezone"] == "Asia/Shanghai"
    assert first["kind"] == "immediate"
    assert [(line["charge_code"], line["amount_minor"]) for line in first["lines"]] == [
        ("monthly_fee", 9_900)
    ]
    assert october["kind"] == "period"
    assert _same_instant(october["period_start"], at("2026-10-01T00:00:00"))
    by_code = {line["charge_code"]: line for line in october["lines"]}
    # 3,600 orders: 600 above the 3,000 included × ¥0.50 = ¥300.00.
    assert by_code["orders"]["kind"] == "usage"
    assert by_code["orders"]["quantity"] == "600"
    assert by_code["orders"]["amount_minor"] == 30_000
    # November's fee in advance, ¥99.00.
    assert by_code["monthly_fee"]["amount_minor"] == 9_900
    assert _same_instant(by_code["monthly_fee"]["period_start"], at("2026-11-01T00:00:00"))
    assert october["total_minor"] == sum(line["amount_minor"] for line in october["lines"])
    assert october["total_minor"] == 39_900
    assert october["currency"] == "CNY"


async def test_upcoming_invoice_without_a_subscription_is_not_found(
    client: AsyncClient, tenant: Tenant
) -> None:
    response = await client.get("/v1/invoices/upcoming", headers=tenant.headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
