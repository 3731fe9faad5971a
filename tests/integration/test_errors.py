"""Bad input gets a 4xx problem+json that names the field, never a 500."""

from httpx import AsyncClient

from tests.integration.conftest import Tenant

PROBLEM = "application/problem+json"


async def test_unknown_field_is_named(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants",
        json={"name": "Shop", "contact_email": "a@b.cn", "colour": "red"},
        headers=operator.headers,
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"].endswith("/validation-error")
    assert body["errors"][0]["field"] == "colour"
    assert body["status"] == 400
    assert body["request_id"] == response.headers["x-request-id"]


async def test_wrong_type_is_named(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants", json={"name": 42, "contact_email": "a@b.cn"}, headers=operator.headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["field"] == "name"
    assert "str" in body["errors"][0]["message"]


async def test_missing_field_is_named(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post("/v1/merchants", json={"name": "x"}, headers=operator.headers)
    assert response.status_code == 400
    assert "contact_email" in response.json()["detail"]


async def test_malformed_json_is_a_400_problem(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants",
        content=b'{"name": "Shop", "contact_',
        headers={**operator.headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_oversize_body_is_a_413_problem(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants",
        content=b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}',
        headers={**operator.headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["type"].endswith("/payload-too-large")


async def test_unknown_route_is_a_404_problem(client: AsyncClient, operator: Tenant) -> None:
    response = await client.get("/v1/nothing-here", headers=operator.headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_wrong_method_is_a_405_problem(client: AsyncClient, operator: Tenant) -> None:
    response = await client.put("/v1/merchants/me", headers=operator.headers)
    assert response.status_code == 405
    assert response.json()["type"].endswith("/method-not-allowed")


async def test_domain_validation_names_the_field(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants",
        json={"name": "Shop", "contact_email": "a@b.cn", "timezone": "Mars/Olympus"},
        headers=operator.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("/invalid-input")
    assert body["field"] == "timezone"


async def test_invalid_email_is_refused(client: AsyncClient, operator: Tenant) -> None:
    response = await client.post(
        "/v1/merchants", json={"name": "Shop", "contact_email": "nope"}, headers=operator.headers
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "contact_email"


async def test_bad_query_parameter_is_a_400_problem(client: AsyncClient, operator: Tenant) -> None:
    response = await client.get("/v1/audit-log?limit=0", headers=operator.headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "limit" in response.text
