"""Hostile input answers a 4xx problem that names the field, never a 500: NUL in any string,
bodies nested too deep, instants at the edges of the calendar, numbers beyond 64 bits, a bad
session cookie, Stripe unreachable. One bad event of a batch is rejected alone."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from service.app import create_app
from service.db.engine import current as current_database
from service.settings import Settings, StripeSettings
from tests.integration.conftest import Tenant
from tests.integration.usage_helpers import advance, at, event, merchant_on_clock, send

PROBLEM = "application/problem+json"
NUL = "a\u0000b"


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert body["field"] == field, body


@pytest.fixture
async def shop(client: AsyncClient, operator: Tenant) -> Tenant:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-10-20T12:00:00")
    return tenant


async def test_a_nul_in_any_string_is_a_4xx_naming_the_field(
    client: AsyncClient, operator: Tenant, shop: Tenant
) -> None:
    merchant = {"name": NUL, "contact_email": "a@b.cn"}
    cases: list[tuple[str, str, Tenant, Any, str]] = [
        ("PATCH", "/v1/merchants/me", shop, {"name": NUL}, "name"),
        ("POST", "/v1/merchants", operator, merchant, "name"),
        ("POST", "/v1/signup", operator, {"merchant": merchant, "plan": "basic"}, "merchant.name"),
        ("POST", "/v1/api-keys", shop, {"name": NUL}, "name"),
        ("POST", "/v1/test-clocks", operator,
         {"name": NUL, "frozen_time": "2026-01-01T00:00:00Z"}, "name"),
    ]  # fmt: skip
    for method, path, caller, body, field in cases:
        response = await client.request(
            method, path, json=body, headers={**caller.headers, "Idempotency-Key": "nul"}
        )
        assert_problem(response, 400, field)
        assert "NUL" in response.json()["detail"]

    for properties in ({"key\u0000": 1}, {"key": NUL}, {"deep": [{"x": NUL}]}):
        response = await send(
            client, shop, event("nul-prop", at("2026-10-15T08:00:00"), properties=properties)
        )
        assert_problem(response, 422, "properties")
        assert response.json()["reason"] == "invalid_properties"

    response = await client.post("/v1/usage/events/a%00b/void", headers=shop.headers)
    assert_problem(response, 422, "path")
    response = await client.get("/v1/invoices?status=open%00", headers=shop.headers)
    assert_problem(response, 422, "query")


BODIES = [
    ("/v1/usage/events", '{"transaction_id":"d","metric":"orders","quantity":1,'
     '"occurred_at":"2026-10-15T08:00:00Z","properties":{"a":%s}}'),
    ("/v1/usage/events/batch", '{"events":%s}'),
    ("/v1/merchants/me", '{"name":%s}'),
    ("/v1/signup", '{"merchant":{"name":"x","contact_email":"a@b.cn"},"plan":"basic",'
     '"contract_overrides":{"a":{"b":%s}}}'),
]  # fmt: skip


async def _send_raw(client: AsyncClient, caller: Tenant, path: str, content: str) -> httpx.Response:
    return await client.request(
        "PATCH" if path.endswith("/me") else "POST",
        path,
        content=content.encode(),
        headers={**caller.headers, "content-type": "application/json", "Idempotency-Key": "d"},
    )


@pytest.mark.parametrize(("path", "template"), BODIES)
async def test_a_body_nested_a_thousand_deep_is_a_400(
    client: AsyncClient, operator: Tenant, shop: Tenant, path: str, template: str
) -> None:
    caller = operator if path == "/v1/signup" else shop
    for depth in (1_000, 100_000):
        response = await _send_raw(client, caller, path, template % nested(depth))
        assert_problem(response, 400)
        body = response.json()
        assert body["type"].endswith("/invalid-json")
        assert "nested deeper than 32" in body["detail"]


@pytest.mark.parametrize(
    ("path", "template", "status", "field"),
    [(*BODIES[0], 422, "properties"), (*BODIES[1], 400, "events[0]"), (*BODIES[2], 400, "name"),
     (*BODIES[3], 400, "contract_overrides")],
)  # fmt: skip
async def test_a_body_nested_past_the_limit_is_refused_naming_the_field(
    client: AsyncClient,
    operator: Tenant,
    shop: Tenant,
    path: str,
    template: str,
    status: int,
    field: str,
) -> None:
    caller = operator if path == "/v1/signup" else shop
    response = await _send_raw(client, caller, path, template % nested(40))
    assert_problem(response, status, field)


async def test_properties_nest_up_to_the_limit_and_no_further(
    client: AsyncClient, shop: Tenant
) -> None:
    when = at("2026-10-15T08:00:00")
    at_limit = {"a": json.loads(nested(31))}  # 32 levels: the object and 31 arrays
    response = await send(client, shop, event("at-limit", when, properties=at_limit))
    assert response.status_code == 201, response.text
    past = {"a": json.loads(nested(32))}
    response = await send(client, shop, event("past-limit", when, properties=past))
    assert_problem(response, 422, "properties")
    assert response.json()["reason"] == "invalid_properties"
    assert "nested deeper than 32" in response.json()["detail"]


async def test_instants_at_the_edges_of_the_calendar_are_refused_by_name(
    client: AsyncClient, shop: Tenant
) -> None:
    for occurred_at in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00",
                        "0001-01-01T00:00:00Z"):  # fmt: skip
        response = await send(client, shop, event("edge", occurred_at))
        assert_problem(response, 422, "occurred_at")
        assert response.json()["reason"] == "occurred_at_out_of_range"


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "0000-01", "2026-13", "2026-00"])
async def test_months_at_the_edges_of_the_calendar_are_a_400(
    client: AsyncClient, operator: Tenant, shop: Tenant, month: str
) -> None:
    for caller, path, field in [
        (shop, f"/v1/invoices?period={month}", "period"),
        (shop, f"/v1/usage/summary?period={month}", "period"),
        (operator, f"/v1/finance/summary?month={month}", "month"),
        (operator, f"/finance?month={month}", "month"),
    ]:
        response = await client.get(path, headers=caller.headers)
        assert_problem(response, 400, field)
        assert "YYYY-MM" in response.json()["detail"]
        assert "regex" not in response.text
        assert "\\d" not in response.text


async def test_query_instants_days_and_ids_at_the_edges_are_a_400(
    client: AsyncClient, operator: Tenant
) -> None:
    for path, field in [
        ("/v1/audit-log?since=0001-01-01T00:00:00%2B14:00", "since"),
        ("/v1/audit-log?until=9999-12-31T23:59:59-23:59", "until"),
        ("/v1/audit-log?before_id=99999999999999999999", "before_id"),
        ("/v1/finance/mrr?on=9999-12-31", "on"),
        ("/v1/finance/mrr?on=0001-01-01", "on"),
    ]:
        assert_problem(await client.get(path, headers=operator.headers), 400, field)


async def test_an_export_at_the_end_of_the_calendar_is_a_problem_not_a_broken_download(
    client: AsyncClient, operator: Tenant
) -> None:
    for kind in ("invoices", "mrr", "usage"):
        response = await client.get(
            f"/v1/finance/exports/{kind}?from=9999-12-31&to=9999-12-31", headers=operator.headers
        )
        assert_problem(response, 400, "from")


def _cookie(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + "0" * 64


@pytest.mark.parametrize(
    "payload",
    [
        b"[1, 2]",
        b'"text"',
        b'{"k": 1, "exp": 2}',
        b'{"k": "00000000-0000-0000-0000-000000000000", "exp": 1e309}',
        b'{"k": "00000000-0000-0000-0000-000000000000", "exp": "soon"}',
        b'{"k": "00000000-0000-0000-0000-000000000000", "exp": 99999999999999999999999}',
        b"not json",
    ],
)
async def test_a_session_cookie_of_the_wrong_shape_is_sent_to_log_in(
    client: AsyncClient, payload: bytes
) -> None:
    response = await client.get(
        "/finance/", headers={"cookie": f"kefu_finance_session={_cookie(payload)}"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/finance/login"


@pytest.fixture
async def unreachable_stripe_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(
        Settings(
            environment="test",
            database=settings.database,
            stripe=StripeSettings(api_key="sk_test_unreachable", api_base="http://127.0.0.1:9"),
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as unreachable:
        yield unreachable


async def test_a_reconciliation_while_stripe_is_unreachable_is_a_503_problem(
    unreachable_stripe_client: AsyncClient, operator: Tenant
) -> None:
    response = await unreachable_stripe_client.post(
        "/v1/finance/reconciliations",
        json={"from": "2026-01-01", "to": "2026-01-31"},
        headers=operator.headers,
    )
    assert_problem(response, 503)
    assert response.headers["retry-after"]
    assert "Stripe" in response.json()["detail"]


async def test_one_bad_event_of_a_batch_is_rejected_alone_and_the_others_are_stored(
    client: AsyncClient, shop: Tenant
) -> None:
    events = [event(f"good-{n}", at("2026-10-15T08:00:00")) for n in range(8)]
    events.insert(3, event("nul-event", at("2026-10-15T08:00:00"), properties={"x": NUL}))
    events.insert(6, event("edge-event", "9999-12-31T23:59:59-23:59"))
    events.append(event("big-event", at("2026-10-15T08:00:00"), properties={"x": "y" * 20_000}))
    response = await client.post(
        "/v1/usage/events/batch", json={"events": events}, headers=shop.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (8, 3)
    verdicts = {r["transaction_id"]: (r["status"], r.get("reason")) for r in body["results"]}
    assert verdicts["nul-event"] == ("rejected", "invalid_properties")
    assert verdicts["edge-event"] == ("rejected", "occurred_at_out_of_range")
    assert verdicts["big-event"] == ("rejected", "properties_too_large")
    stored = await current_database().pool.fetchval(
        "SELECT count(*) FROM usage_transactions WHERE merchant_id = $1", shop.merchant_id
    )
    assert stored == 8
