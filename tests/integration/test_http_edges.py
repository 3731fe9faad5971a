"""The smaller edges of issue 13: sessions that really end, cross-site posts refused, safe
headers on documents, JSON bodies only as JSON, one charset, a body that never arrives, and a
signup that cannot be doubled by a retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from litestar import Litestar

from service.app import create_app
from service.db.engine import current as current_database
from service.settings import LimitSettings, Settings, StripeSettings
from service.tenancy.principal import Role
from tests.integration.conftest import Tenant, issue_key, post_scope, signup_tenant
from tests.integration.invoicing_helpers import close_pass, invoices_of, new_clock
from tests.integration.usage_helpers import advance, at, event, merchant_on_clock, send

ORIGIN = "http://testserver"
COOKIE = "kefu_finance_session"


async def _log_in(client: AsyncClient, key: str) -> str:
    client.cookies.clear()
    response = await client.post(
        "/finance/login", data={"api_key": key}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 303, response.text
    token = response.cookies[COOKIE]
    client.cookies.clear()
    return token


async def _page_with(client: AsyncClient, token: str) -> httpx.Response:
    return await client.get("/finance/", headers={"cookie": f"{COOKIE}={token}"})


async def test_logout_ends_the_session_on_the_server(client: AsyncClient, operator: Tenant) -> None:
    token = await _log_in(client, operator.key)
    assert (await _page_with(client, token)).status_code == 200
    out = await client.post(
        "/finance/logout", headers={"Origin": ORIGIN, "cookie": f"{COOKIE}={token}"}
    )
    assert out.status_code == 303
    # The browser forgets the cookie; a copy of it kept elsewhere is now worthless too.
    again = await _page_with(client, token)
    assert again.status_code == 303
    assert again.headers["location"] == "/finance/login"


async def test_revoking_the_key_ends_its_sessions(client: AsyncClient, operator: Tenant) -> None:
    secret, key_id = await issue_key(Role.OPERATOR, None, ["finance:read"])
    token = await _log_in(client, secret)
    assert (await _page_with(client, token)).status_code == 200
    revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=operator.headers)
    assert revoked.status_code == 200
    assert (await _page_with(client, token)).status_code == 303
    ended = await current_database().pool.fetchval(
        "SELECT count(*) FROM finance_sessions WHERE key_id = $1 AND ended_at IS NOT NULL",
        key_id,
    )
    assert ended == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/finance/login"},
        {},
    ],
)
async def test_login_and_logout_refuse_posts_from_other_sites(
    client: AsyncClient, operator: Tenant, headers: dict[str, str]
) -> None:
    client.cookies.clear()
    login = await client.post("/finance/login", data={"api_key": operator.key}, headers=headers)
    assert login.status_code == 403, login.text
    assert COOKIE not in login.headers.get("set-cookie", "")
    assert login.json()["field"] == "Origin"
    token = await _log_in(client, operator.key)
    logout = await client.post(
        "/finance/logout", headers={**headers, "cookie": f"{COOKIE}={token}"}
    )
    assert logout.status_code == 403
    assert (await _page_with(client, token)).status_code == 200  # not logged out by a forgery
    same_site = await client.post(
        "/finance/login", data={"api_key": operator.key}, headers={"Referer": f"{ORIGIN}/x"}
    )
    assert same_site.status_code == 303


async def test_the_invoice_document_is_sent_with_safe_headers(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await close_pass(tenant.merchant_id)
    (invoice,) = await invoices_of(client, tenant)
    page = await client.get(f"/v1/invoices/{invoice['id']}.html", headers=tenant.headers)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # no script may run, whatever the document holds
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_json_endpoints_refuse_other_media_types_with_415(
    client: AsyncClient, operator: Tenant, content_type: str
) -> None:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-10-20T12:00:00")
    body = event("media", at("2026-10-15T08:00:00"))
    for path, payload in [
        ("/v1/usage/events", body),
        ("/v1/usage/events/batch", {"events": [body]}),
        ("/v1/merchants/me", {"name": "x"}),
    ]:
        method = "PATCH" if path.endswith("/me") else "POST"
        response = await client.request(
            method,
            path,
            content=httpx.Request("POST", "/", json=payload).content,
            headers={**tenant.headers, "content-type": content_type},
        )
        assert response.status_code == 415, response.text
        assert response.json()["type"].endswith("/unsupported-media-type")
        assert response.json()["field"] == "Content-Type"
    accepted = await client.post(
        "/v1/usage/events",
        content=httpx.Request("POST", "/", json=body).content,
        headers={**tenant.headers, "content-type": "application/json; charset=utf-8"},
    )
    assert accepted.status_code == 201, accepted.text


async def test_a_csv_export_names_its_charset_once(client: AsyncClient, operator: Tenant) -> None:
    response = await client.get(
        "/v1/finance/exports/revenue?from=2026-01-01&to=2026-01-31", headers=operator.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"


async def test_properties_above_the_limit_are_rejected_by_reason(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-10-20T12:00:00")
    big = event("big", at("2026-10-15T08:00:00"), properties={"blob": "x" * 17_000})
    response = await send(client, tenant, big)
    assert response.status_code == 422
    assert response.json()["reason"] == "properties_too_large"
    fits = event("fits", at("2026-10-15T08:00:00"), properties={"blob": "x" * 16_000})
    assert (await send(client, tenant, fits)).status_code == 201


@pytest.fixture(scope="module")
def impatient_app(settings: Settings) -> Litestar:
    return create_app(
        Settings(
            environment="test",
            database=settings.database,
            limits=LimitSettings(body_timeout_seconds=0.2),
            # So that Stripe's webhook route reads its body (without a secret it refuses first).
            stripe=StripeSettings(webhook_secret="whsec_impatient"),
        )
    )


async def _call_without_body(app: Litestar, path: str, key: str) -> list[dict[str, Any]]:
    """A request that declares 100 bytes of body and never sends them."""
    scope = post_scope(
        path, key, [(b"content-type", b"application/json"), (b"content-length", b"100")]
    )
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # The guard only turns a hang into a failure; the answer itself comes from the app.
    await asyncio.wait_for(app(scope, receive, send), timeout=60)
    return sent


@pytest.mark.parametrize(
    "path", ["/v1/merchants", "/v1/usage/events", "/v1/usage/events/batch", "/webhooks/stripe"]
)
async def test_a_body_that_never_arrives_is_answered_408(
    client: AsyncClient, impatient_app: Litestar, operator: Tenant, path: str
) -> None:
    tenant, _ = await signup_tenant(client, operator)
    key = operator.key if path == "/v1/merchants" else tenant.key
    sent = await _call_without_body(impatient_app, path, key)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert b"x-request-id" in headers


async def test_signup_without_an_idempotency_key_is_a_400_and_makes_nothing(
    client: AsyncClient, operator: Tenant
) -> None:
    name = f"No key shop {uuid.uuid4()}"
    body = {"merchant": {"name": name, "contact_email": "a@b.cn"}, "plan": "basic"}
    response = await client.post("/v1/signup", json=body, headers=operator.headers)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in problem["detail"]
    made = await current_database().pool.fetchval(
        "SELECT count(*) FROM merchants WHERE name = $1", name
    )
    assert made == 0


async def test_a_capped_test_clock_moves_at_most_the_cap_at_once(
    settings: Settings, operator: Tenant
) -> None:
    capped = create_app(
        Settings(
            environment="test",
            database=settings.database,
            limits=LimitSettings(test_clock_max_advance_days=3),
        )
    )
    transport = httpx.ASGITransport(app=capped)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
        url = f"/v1/test-clocks/{clock}/advance"
        far = await client.post(
            url, json={"frozen_time": "2027-03-01T00:00:00+08:00"}, headers=operator.headers
        )
        assert far.status_code == 422, far.text
        assert far.json()["field"] == "frozen_time"
        assert "at most 3 days" in far.json()["detail"]
        near = await client.post(
            url, json={"frozen_time": "2026-03-04T00:00:00+08:00"}, headers=operator.headers
        )
        assert near.status_code == 200, near.text
