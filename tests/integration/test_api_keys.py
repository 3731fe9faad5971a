"""API keys: shown once, stored hashed, scoped, revocable; 401 unknown/revoked, 403 no scope."""

import asyncio
import hashlib
import uuid

from httpx import AsyncClient

from service.db.engine import Database
from service.tenancy import keys
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from tests.integration.conftest import Tenant, make_tenant


async def test_key_is_shown_once_and_stored_as_a_hash(
    client: AsyncClient, tenant: Tenant, database: Database
) -> None:
    created = await client.post("/v1/api-keys", json={"name": "pipeline"}, headers=tenant.headers)
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith("kbm_")
    assert body["prefix"] == secret[:12]
    assert set(body["scopes"]) == {"usage:write", "billing:read", "billing:write"}

    row = await database.pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", body["id"])
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row).values())

    listed = await client.get("/v1/api-keys", headers=tenant.headers)
    assert listed.status_code == 200
    assert body["id"] in [k["id"] for k in listed.json()]
    assert all("key" not in k for k in listed.json())

    me = await client.get("/v1/merchants/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert me.json()["id"] == str(tenant.merchant_id)


async def test_unknown_key_and_missing_key_get_401(client: AsyncClient) -> None:
    missing = await client.get("/v1/merchants/me")
    assert missing.status_code == 401
    assert missing.json()["type"].endswith("/unauthenticated")
    unknown = await client.get("/v1/merchants/me", headers={"Authorization": "Bearer kbm_nope"})
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_gets_401(client: AsyncClient, tenant: Tenant) -> None:
    created = (await client.post("/v1/api-keys", json={}, headers=tenant.headers)).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/v1/merchants/me", headers=headers)).status_code == 200
    revoked = await client.delete(f"/v1/api-keys/{created['id']}", headers=tenant.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await client.get("/v1/merchants/me", headers=headers)).status_code == 401


async def test_revocation_elsewhere_reaches_this_process_within_the_cache_time(
    client: AsyncClient, tenant: Tenant, database: Database
) -> None:
    created = (await client.post("/v1/api-keys", json={}, headers=tenant.headers)).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/v1/merchants/me", headers=headers)).status_code == 200
    # Another process revokes it: this process's cache does not hear of it.
    await database.pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1", created["id"]
    )
    assert (await client.get("/v1/merchants/me", headers=headers)).status_code == 200  # cached
    await asyncio.sleep(keys._cache.ttl_seconds + 0.1)
    assert (await client.get("/v1/merchants/me", headers=headers)).status_code == 401


async def test_missing_scope_gets_403(client: AsyncClient) -> None:
    reader = await make_tenant("Reader", scopes=["billing:read"])
    response = await client.patch("/v1/merchants/me", json={"name": "New"}, headers=reader.headers)
    assert response.status_code == 403
    assert "billing:write" in response.json()["detail"]


async def test_merchant_cannot_mint_operator_or_foreign_keys(
    client: AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    as_operator = await client.post(
        "/v1/api-keys", json={"role": "operator"}, headers=tenant.headers
    )
    assert as_operator.status_code == 403
    foreign = await client.post(
        "/v1/api-keys", json={"merchant_id": str(other_tenant.merchant_id)}, headers=tenant.headers
    )
    assert foreign.status_code == 404


async def test_merchant_key_cannot_hold_operator_scopes(
    client: AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/api-keys", json={"scopes": ["finance:read"]}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.json()["field"] == "scopes"


async def test_operator_mints_a_merchant_key(
    client: AsyncClient, operator: Tenant, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/api-keys",
        json={"merchant_id": str(tenant.merchant_id), "scopes": ["usage:write"]},
        headers=operator.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "merchant"
    assert body["merchant_id"] == str(tenant.merchant_id)
    assert body["scopes"] == ["usage:write"]


async def test_operator_key_cannot_act_as_a_merchant(client: AsyncClient, operator: Tenant) -> None:
    response = await client.get("/v1/merchants/me", headers=operator.headers)
    assert response.status_code == 403


async def test_a_merchant_key_is_made_only_for_a_merchant_that_exists(
    client: AsyncClient, operator: Tenant, database: Database
) -> None:
    # api_keys is a reference table on Citus, without a foreign key to merchants: the check is
    # the code's (merchants are never deleted), and the ledger below has no key without one.
    for missing in (uuid.uuid4(), PLATFORM_MERCHANT_ID):
        response = await client.post(
            "/v1/api-keys",
            json={"merchant_id": str(missing), "scopes": ["usage:write"]},
            headers=operator.headers,
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert f"merchant {missing} not found" in response.json()["detail"]
    key_merchants = {
        row["merchant_id"]
        for row in await database.pool.fetch(
            "SELECT DISTINCT merchant_id FROM api_keys WHERE merchant_id IS NOT NULL"
        )
    }
    merchants = await database.pool.fetch(
        "SELECT id FROM merchants WHERE id = ANY($1::uuid[])", list(key_merchants)
    )
    assert key_merchants
    assert {row["id"] for row in merchants} == key_merchants
