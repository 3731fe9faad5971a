"""Clear 4xx answers that change nothing; idempotent signup; concurrent changes; contracts."""

from __future__ import annotations

import asyncio
import uuid

from httpx import AsyncClient

from service.db.engine import Database
from tests.integration.conftest import Tenant, signup_tenant


async def _state(database: Database, sub_id: str) -> tuple:
    row = await database.pool.fetchrow(
        "SELECT status, plan_code, plan_version, addons, lock_version, cancel_at_period_end"
        " FROM subscriptions WHERE id = $1",
        uuid.UUID(sub_id),
    )
    events = await database.pool.fetchval(
        "SELECT count(*) FROM subscription_events WHERE subscription_id = $1", uuid.UUID(sub_id)
    )
    return (*row.values(), events)


async def test_disallowed_transitions_are_409_and_change_nothing(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    tenant, sub = await signup_tenant(client, operator, plan="basic")
    url = f"/v1/subscriptions/{sub['id']}"
    before = await _state(database, sub["id"])
    resumed = await client.post(f"{url}/resume", headers=tenant.headers)
    assert resumed.status_code == 409
    assert resumed.json()["type"].endswith("/conflict")
    assert await _state(database, sub["id"]) == before

    assert (await client.post(f"{url}/pause", headers=tenant.headers)).status_code == 200
    paused_again = await client.post(f"{url}/pause", headers=tenant.headers)
    assert paused_again.status_code == 409
    assert paused_again.json()["type"].endswith("/invalid-transition")
    change = await client.post(
        f"{url}/change-plan", json={"plan": "advanced"}, headers=tenant.headers
    )
    assert change.status_code == 409
    assert (await client.post(f"{url}/resume", headers=tenant.headers)).json()["status"] == "active"

    canceled = await client.post(
        f"{url}/cancel", json={"at_period_end": False}, headers=tenant.headers
    )
    assert canceled.json()["status"] == "canceled"
    after_cancel = await _state(database, sub["id"])
    for action, body in (
        ("pause", None),
        ("resume", None),
        ("cancel", {"at_period_end": True}),
        ("change-plan", {"plan": "advanced"}),
    ):
        response = await client.post(f"{url}/{action}", json=body, headers=tenant.headers)
        assert response.status_code == 409, (action, response.text)
    assert await _state(database, sub["id"]) == after_cancel


async def test_unknown_plan_and_addon_are_clear_4xx(client: AsyncClient, operator: Tenant) -> None:
    unknown = await client.post(
        "/v1/signup",
        json={"merchant": {"name": "x", "contact_email": "a@b.cn"}, "plan": "platinum"},
        headers={**operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert unknown.status_code == 404
    assert "platinum" in unknown.json()["detail"]
    tenant, sub = await signup_tenant(client, operator, plan="basic")
    bad_version = await client.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={"plan": "advanced", "plan_version": 99},
        headers=tenant.headers,
    )
    assert bad_version.status_code == 404
    bad_addon = await client.post(
        f"/v1/subscriptions/{sub['id']}/add-ons",
        json={"addons": ["free_lunch"]},
        headers=tenant.headers,
    )
    assert bad_addon.status_code == 422
    assert bad_addon.json()["field"] == "addons"


async def test_currency_that_does_not_match_is_refused_and_creates_nothing(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    merchants_before = await database.pool.fetchval("SELECT count(*) FROM merchants")
    response = await client.post(
        "/v1/signup",
        json={
            "merchant": {"name": "Dollar shop", "contact_email": "a@b.cn", "currency": "USD"},
            "plan": "basic",
        },
        headers={**operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/currency-mismatch")
    assert await database.pool.fetchval("SELECT count(*) FROM merchants") == merchants_before


async def test_signup_is_idempotent(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    body = {
        "merchant": {"name": "Once", "contact_email": "once@shop.cn"},
        "plan": "advanced",
        "trial_days": 0,
    }
    headers = {**operator.headers, "Idempotency-Key": f"signup-{uuid.uuid4()}"}
    first, second = await asyncio.gather(
        client.post("/v1/signup", json=body, headers=headers),
        client.post("/v1/signup", json=body, headers=headers),
    )
    third = await client.post("/v1/signup", json=body, headers=headers)
    answers = sorted([first, second, third], key=lambda r: r.headers.get("idempotent-replayed", ""))
    original = answers[0].json()
    assert answers[0].status_code == 201
    assert original["api_key"]["key"].startswith("kbm_")
    for replay in answers[1:]:
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["merchant"]["id"] == original["merchant"]["id"]
        assert replay.json()["subscription"]["id"] == original["subscription"]["id"]
        assert replay.json()["api_key"] is None  # the key is shown once, never stored in clear
    count = await database.pool.fetchval(
        "SELECT count(*) FROM merchants WHERE contact_email = 'once@shop.cn'"
    )
    assert count == 1
    other = await client.post("/v1/signup", json={**body, "plan": "basic"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["type"].endswith("/idempotency-conflict")


async def test_concurrent_changes_one_wins_the_rest_get_409(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    tenant, sub = await signup_tenant(client, operator, plan="basic")
    url = f"/v1/subscriptions/{sub['id']}/change-plan"
    responses = await asyncio.gather(
        *(client.post(url, json={"plan": "advanced"}, headers=tenant.headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7, [r.text for r in responses]
    proration_rows = await database.pool.fetchval(
        "SELECT count(*) FROM pending_invoice_lines WHERE subscription_id = $1"
        " AND line->>'kind' = 'proration'",
        uuid.UUID(sub["id"]),
    )
    assert proration_rows == 2  # one credit + one charge: applied once
    changed = await database.pool.fetchval(
        "SELECT count(*) FROM subscription_events"
        " WHERE subscription_id = $1 AND kind = 'plan_changed'",
        uuid.UUID(sub["id"]),
    )
    assert changed == 1


async def test_cancel_now_credits_the_unused_fee(client: AsyncClient, operator: Tenant) -> None:
    clock = (
        await client.post(
            "/v1/test-clocks",
            json={"frozen_time": "2026-06-01T00:00:00+08:00"},
            headers=operator.headers,
        )
    ).json()
    tenant, sub = await signup_tenant(client, operator, plan="advanced", test_clock_id=clock["id"])
    await client.post(
        f"/v1/test-clocks/{clock['id']}/advance",
        json={"frozen_time": "2026-06-21T00:00:00+08:00"},
        headers=operator.headers,
    )
    canceled = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel",
        json={"at_period_end": False, "reason": "closing shop"},
        headers=tenant.headers,
    )
    assert canceled.status_code == 200
    body = canceled.json()
    assert body["status"] == "canceled"
    # June has 30 days; 10 unused: ¥300 × 10/30 = ¥100 credited.
    assert [line["amount_minor"] for line in body["pending_lines"]] == [30000, -10000]


async def test_operator_sets_a_custom_contract(
    client: AsyncClient, operator: Tenant, tenant: Tenant
) -> None:
    custom, _ = await signup_tenant(
        client,
        operator,
        plan="custom",
        contract_overrides={"orders": {"unit_price": "0.25"}},
    )
    response = await client.put(
        f"/v1/merchants/{custom.merchant_id}/contract",
        json={
            "overrides": {"gmv_fee": {"rate": "0.005"}},
            "effective_from": "2026-12-01T00:00:00+08:00",
        },
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["overrides"] == {"gmv_fee": {"rate": "0.005"}}
    bad = await client.put(
        f"/v1/merchants/{custom.merchant_id}/contract",
        json={
            "overrides": {"nonexistent": {"rate": "0.1"}},
            "effective_from": "2026-12-01T00:00:00+08:00",
        },
        headers=operator.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["field"] == "overrides"
    basic, _ = await signup_tenant(client, operator, plan="basic")
    not_custom = await client.put(
        f"/v1/merchants/{basic.merchant_id}/contract",
        json={
            "overrides": {"orders": {"unit_price": "0.1"}},
            "effective_from": "2026-12-01T00:00:00+08:00",
        },
        headers=operator.headers,
    )
    assert not_custom.status_code == 422
    as_merchant = await client.put(
        f"/v1/merchants/{custom.merchant_id}/contract",
        json={"overrides": {}, "effective_from": "2026-12-01T00:00:00+08:00"},
        headers=custom.headers,
    )
    assert as_merchant.status_code == 403


async def test_operator_lists_any_merchant_and_merchant_only_its_own(
    client: AsyncClient, operator: Tenant
) -> None:
    a, sub_a = await signup_tenant(client, operator, plan="basic", name="A")
    b, sub_b = await signup_tenant(client, operator, plan="basic", name="B")
    mine = await client.get("/v1/subscriptions", headers=a.headers)
    assert [s["id"] for s in mine.json()] == [sub_a["id"]]
    for_b = await client.get(
        "/v1/subscriptions", params={"merchant_id": str(b.merchant_id)}, headers=operator.headers
    )
    assert [s["id"] for s in for_b.json()] == [sub_b["id"]]
