"""Error messages say what to do: a misspelt field gets the right name suggested, a missing
field is named, a pattern is explained in words (never a regex), a malformed body says what
is wrong and where, and every 4xx carries the request id, 404 and 405 included."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient

from tests.integration.conftest import Tenant
from tests.integration.usage_helpers import advance, at, event, merchant_on_clock

PROBLEM = "application/problem+json"


@pytest.fixture
async def shop(client: AsyncClient, operator: Tenant) -> Tenant:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-10-20T12:00:00")
    return tenant


async def test_an_unknown_field_suggests_the_closest_known_one(
    client: AsyncClient, shop: Tenant
) -> None:
    body = event("typo", at("2026-10-15T08:00:00"))
    body["occured_at"] = body.pop("occurred_at")
    single = await client.post("/v1/usage/events", json=body, headers=shop.headers)
    assert single.status_code == 400
    problem = single.json()
    assert problem["field"] == "occured_at"
    assert "did you mean `occurred_at`?" in problem["detail"]

    batch = await client.post(
        "/v1/usage/events/batch",
        json={"events": [event("ok", at("2026-10-15T08:00:00")), body]},
        headers=shop.headers,
    )
    assert batch.status_code == 400
    assert batch.json()["field"] == "events[1].occured_at"
    assert "did you mean `occurred_at`?" in batch.json()["detail"]

    far = await client.patch("/v1/merchants/me", json={"colour": "red"}, headers=shop.headers)
    assert far.json()["field"] == "colour"
    assert "`contact_email`" in far.json()["detail"]  # nothing close: the fields there are listed


async def test_a_missing_field_is_named(client: AsyncClient, shop: Tenant) -> None:
    body = event("no-quantity", at("2026-10-15T08:00:00"))
    del body["quantity"]
    single = await client.post("/v1/usage/events", json=body, headers=shop.headers)
    assert single.status_code == 400
    assert single.json()["field"] == "quantity"
    assert "`quantity` is required" in single.json()["detail"]
    batch = await client.post(
        "/v1/usage/events/batch", json={"events": [body]}, headers=shop.headers
    )
    assert batch.json()["field"] == "events[0].quantity"


async def test_patterns_are_explained_in_words_never_as_a_regex(
    client: AsyncClient, operator: Tenant, shop: Tenant
) -> None:
    signup = await client.post(
        "/v1/signup",
        json={"merchant": {"name": "x", "contact_email": "a@b.cn"}, "plan": "Basic"},
        headers={**operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert signup.status_code == 400
    assert signup.json()["field"] == "plan"
    assert "lower case" in signup.json()["detail"]
    period = await client.get("/v1/usage/summary?period=2026-13", headers=shop.headers)
    assert period.status_code == 400
    assert period.json()["field"] == "period"
    assert "YYYY-MM" in period.json()["detail"]
    export = await client.get(
        "/v1/finance/exports/invoices?from=2026-01-01&to=2026-01-31&format=pdf",
        headers=operator.headers,
    )
    assert export.status_code == 400
    assert "one of `csv`, `parquet`, `xlsx`" in export.json()["detail"]
    for response in (signup, period, export):
        assert "regex" not in response.text
        assert "^" not in response.text
        assert "\\\\" not in response.text


async def test_a_malformed_batch_says_what_is_wrong_and_where(
    client: AsyncClient, shop: Tenant
) -> None:
    cut_short = b'{"events": [{"transaction_id": "x",\n "metric": "orders"'
    truncated = await client.post(
        "/v1/usage/events/batch",
        content=cut_short,
        headers={**shop.headers, "content-type": "application/json"},
    )
    assert truncated.status_code == 400
    detail = truncated.json()["detail"]
    assert "line 2, column 20" in detail
    assert "not closed" in detail
    broken = await client.post(
        "/v1/usage/events/batch",
        content=b'{"events": [{"transaction_id": "x",, }]}',
        headers={**shop.headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert "line 1, column 36" in broken.json()["detail"]
    assert broken.json()["type"].endswith("/invalid-json")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing-here", 404),
        ("PUT", "/v1/merchants/me", 405),
        ("DELETE", "/v1/usage/summary", 405),
        ("GET", "/nowhere/at/all", 404),
    ],
)
async def test_every_4xx_carries_the_request_id(
    client: AsyncClient, shop: Tenant, method: str, path: str, status: int
) -> None:
    for headers in (shop.headers, {}):
        response = await client.request(method, path, headers=headers)
        assert response.status_code in (status, 401), response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["request_id"] == response.headers["x-request-id"]
    chosen = await client.request(method, path, headers={**shop.headers, "X-Request-Id": "abc-1"})
    assert chosen.json()["request_id"] == "abc-1"
