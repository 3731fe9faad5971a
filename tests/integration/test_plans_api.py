"""The plans API: published plans, their versions, and the side-by-side quote."""

from httpx import AsyncClient

from tests.integration.conftest import Tenant


async def test_lists_the_three_tiers_with_catalog_prices(
    client: AsyncClient, tenant: Tenant
) -> None:
    response = await client.get("/v1/plans", headers=tenant.headers)
    assert response.status_code == 200
    plans = {p["plan"]["code"]: p["plan"] for p in response.json()}
    assert list(plans) == ["basic", "advanced", "custom"]
    fee = {
        code: next(c for c in plan["charges"] if c["code"] == "monthly_fee")["amount_minor"]
        for code, plan in plans.items()
    }
    assert fee == {"basic": 9900, "advanced": 30000, "custom": 120000}


async def test_plan_shows_current_and_past_versions(client: AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/v1/plans/advanced", headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["current"]["plan"]["version"] == 1
    assert [v["plan"]["version"] for v in body["versions"]] == [1]
    missing = await client.get("/v1/plans/gold", headers=tenant.headers)
    assert missing.status_code == 404


async def test_quote_rates_every_plan_cheapest_first(client: AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/plans/quote", json={"orders": 3600, "month": "2026-10"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    totals = {q["plan_code"]: q["total_minor"] for q in body["quotes"]}
    # basic: ¥99 + 600 × ¥0.50 = ¥399; advanced: ¥300 (15,000 included);
    # custom: ¥1,200 + 3,600 × ¥0.20 = ¥1,920 (GMV 0 is under the threshold).
    assert totals == {"basic": 39900, "advanced": 30000, "custom": 192000}
    assert [q["plan_code"] for q in body["quotes"]] == ["advanced", "basic", "custom"]
    assert body["break_evens"], "break-even points between the tiers"


async def test_quote_refuses_bad_input(client: AsyncClient, tenant: Tenant) -> None:
    negative = await client.post("/v1/plans/quote", json={"orders": -1}, headers=tenant.headers)
    assert negative.status_code == 400
    assert negative.json()["errors"][0]["field"] == "orders"
    bad_month = await client.post(
        "/v1/plans/quote", json={"month": "2026-13"}, headers=tenant.headers
    )
    assert bad_month.status_code == 400
    assert bad_month.json()["field"] == "month"
    assert "YYYY-MM" in bad_month.json()["detail"]
