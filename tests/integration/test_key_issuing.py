"""A key issued through the API never holds more than the key that issued it: its role and
scopes are a subset of the issuer's; anything else is a 403, and the refusal is audited."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from service.db.engine import current as current_database
from service.tenancy.principal import OPERATOR_SCOPES, Role
from tests.integration.conftest import Tenant, issue_key, make_tenant


async def _refusals(key_id: Any) -> list[dict[str, Any]]:
    rows = await current_database().pool.fetch(
        "SELECT action, changes::text AS changes, request_id FROM audit_log"
        " WHERE actor_key_id = $1 AND action = 'issue_refused' ORDER BY id",
        key_id,
    )
    return [dict(row) for row in rows]


async def test_a_restricted_operator_key_cannot_mint_a_key_with_more_scopes(
    client: AsyncClient,
) -> None:
    secret, key_id = await issue_key(Role.OPERATOR, None, ["billing:write"])
    headers = {"Authorization": f"Bearer {secret}"}
    every_scope = sorted(str(scope) for scope in OPERATOR_SCOPES)

    escalation = await client.post(
        "/v1/api-keys", json={"role": "operator", "scopes": every_scope}, headers=headers
    )
    assert escalation.status_code == 403, escalation.text
    body = escalation.json()
    assert body["field"] == "scopes"
    assert "finance:read" in body["detail"]
    assert "signup" in body["detail"]
    assert "key" not in body
    (refusal,) = await _refusals(key_id)
    assert refusal["request_id"] == escalation.headers["x-request-id"]
    assert "finance:read" in refusal["changes"]

    # Without scopes, the new key gets what the issuer holds, never more; it works as such.
    default = await client.post("/v1/api-keys", json={"role": "operator"}, headers=headers)
    assert default.status_code == 201, default.text
    assert default.json()["scopes"] == ["billing:write"]
    minted = {"Authorization": f"Bearer {default.json()['key']}"}
    finance = await client.get("/v1/finance/summary?month=2026-01", headers=minted)
    assert finance.status_code == 403


async def test_a_restricted_merchant_key_cannot_mint_a_broader_one(client: AsyncClient) -> None:
    writer = await make_tenant("Billing writer only", scopes=["billing:write"])
    broader = await client.post(
        "/v1/api-keys",
        json={"scopes": ["usage:write", "billing:read", "billing:write"]},
        headers=writer.headers,
    )
    assert broader.status_code == 403, broader.text
    assert "usage:write" in broader.json()["detail"]
    operator_key = await client.post(
        "/v1/api-keys", json={"role": "operator"}, headers=writer.headers
    )
    assert operator_key.status_code == 403
    assert operator_key.json()["field"] == "role"
    assert len(await _refusals(writer.key_id)) == 2

    same = await client.post("/v1/api-keys", json={}, headers=writer.headers)
    assert same.status_code == 201, same.text
    assert same.json()["scopes"] == ["billing:write"]
    narrower = await client.post(
        "/v1/api-keys", json={"scopes": ["billing:write"], "name": "app"}, headers=writer.headers
    )
    assert narrower.status_code == 201


async def test_a_full_operator_key_still_issues_any_key(
    client: AsyncClient, operator: Tenant
) -> None:
    every_scope = sorted(str(scope) for scope in OPERATOR_SCOPES)
    response = await client.post(
        "/v1/api-keys", json={"role": "operator", "scopes": every_scope}, headers=operator.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["scopes"] == every_scope


async def test_a_missing_scope_is_named_in_words_not_as_an_enum(client: AsyncClient) -> None:
    reader = await make_tenant("Reader only", scopes=["billing:read"])
    response = await client.patch("/v1/merchants/me", json={"name": "x"}, headers=reader.headers)
    assert response.status_code == 403
    body = response.json()
    assert "'billing:write'" in body["detail"]
    assert "KeyScope" not in response.text
    assert body["scope"] == "billing:write"
