"""Every state change made through the API is in the audit log: who, what, when, the change."""

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.integration.conftest import Tenant


async def test_changes_are_recorded_with_actor_and_change(
    client: AsyncClient, operator: Tenant, tenant: Tenant
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    patched = await client.patch(
        "/v1/merchants/me",
        json={"name": "Audited"},
        headers={**tenant.headers, "X-Request-ID": "r-42"},
    )
    assert patched.status_code == 200
    key = (await client.post("/v1/api-keys", json={"name": "ci"}, headers=tenant.headers)).json()
    await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.headers)

    page = await client.get(
        "/v1/audit-log",
        params={"merchant_id": str(tenant.merchant_id), "since": started.isoformat()},
        headers=operator.headers,
    )
    assert page.status_code == 200
    # The fixture's own setup (merchant and first key, by the system) is in the window too.
    entries = [e for e in page.json()["entries"] if e["actor_role"] != "system"]
    actions = [(e["entity"], e["action"]) for e in entries]
    assert actions == [("api_key", "revoked"), ("api_key", "created"), ("merchant", "updated")]
    update = entries[2]
    assert update["actor_key_id"] == str(tenant.key_id)
    assert update["actor_role"] == "merchant"
    assert update["request_id"] == "r-42"
    assert update["changes"]["after"] == {"name": "Audited"}
    assert update["changes"]["before"] == {"name": "Shop A"}
    assert all(key["key"] not in str(e) for e in entries)


async def test_audit_log_filters_by_merchant_and_time(
    client: AsyncClient, operator: Tenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    await client.patch("/v1/merchants/me", json={"name": "B2"}, headers=other_tenant.headers)
    only_a = await client.get(
        "/v1/audit-log", params={"merchant_id": str(tenant.merchant_id)}, headers=operator.headers
    )
    assert {e["merchant_id"] for e in only_a.json()["entries"]} == {str(tenant.merchant_id)}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = await client.get("/v1/audit-log", params={"since": future}, headers=operator.headers)
    assert none.json()["entries"] == []


async def test_audit_log_pages(client: AsyncClient, operator: Tenant, tenant: Tenant) -> None:
    for n in range(3):
        await client.patch("/v1/merchants/me", json={"name": f"n{n}"}, headers=tenant.headers)
    params = {"merchant_id": str(tenant.merchant_id), "limit": "2"}
    first = (await client.get("/v1/audit-log", params=params, headers=operator.headers)).json()
    assert len(first["entries"]) == 2
    second = (
        await client.get(
            "/v1/audit-log",
            params={**params, "before_id": str(first["next_before_id"])},
            headers=operator.headers,
        )
    ).json()
    assert {e["id"] for e in first["entries"]}.isdisjoint({e["id"] for e in second["entries"]})
    assert max(e["id"] for e in second["entries"]) < min(e["id"] for e in first["entries"])


async def test_merchants_cannot_read_the_audit_log(client: AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/v1/audit-log", headers=tenant.headers)
    assert response.status_code == 403
