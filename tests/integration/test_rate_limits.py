"""Per-merchant rate limits by tier (``service.ratelimit``): a merchant over its quota gets a 429
with ``Retry-After`` and the RateLimit fields of draft-ietf-httpapi-ratelimit-headers-10, on the
single-event hot path too; other merchants and operators are not held back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from litestar import Litestar

from service.app import create_app
from service.settings import RateLimitSettings, Settings
from tests.integration.conftest import Tenant, make_tenant, signup_answer
from tests.integration.usage_helpers import at, event, merchant_on_clock, summary

# An hour's window: nothing refills while a test runs.
LIMITS = RateLimitSettings(basic=5, advanced=9, custom=0, window_seconds=3600, api_processes=1)


@pytest.fixture(scope="module")
def limited_app(settings: Settings) -> Litestar:
    return create_app(Settings(environment="test", database=settings.database, rate_limits=LIMITS))


@pytest.fixture
async def limited(limited_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=limited_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _spend(client: httpx.AsyncClient, tenant: Tenant, times: int) -> list[httpx.Response]:
    return [await client.get("/v1/merchants/me", headers=tenant.headers) for _ in range(times)]


async def test_a_merchant_over_its_quota_gets_a_429_with_retry_after_and_ratelimit_fields(
    limited: httpx.AsyncClient, database: object
) -> None:
    tenant = await make_tenant("Flooding shop")
    answers = await _spend(limited, tenant, 6)
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"] == "https://kefu-billing.dev/problems/rate-limited"
    assert body["violated-policies"] == ["basic"]
    assert "batch" in body["detail"]
    retry_after = int(refused.headers["retry-after"])
    assert retry_after >= 1
    assert refused.headers["ratelimit-policy"] == '"basic";q=5;w=3600'
    remaining = re.fullmatch(r'"basic";r=(\d+);t=(\d+)', refused.headers["ratelimit"])
    assert remaining is not None
    assert int(remaining.group(1)) == 0
    # Retry-After never points earlier than the reset (the draft's rule).
    assert retry_after >= int(remaining.group(2)) >= 1


async def test_the_fields_appear_once_less_than_half_the_quota_is_left(
    limited: httpx.AsyncClient, database: object
) -> None:
    tenant = await make_tenant("Counting shop")
    answers = await _spend(limited, tenant, 5)
    shown = [a.headers.get("ratelimit") for a in answers]
    # 5 a window: after the 3rd request 2 are left, less than half.
    assert shown[:2] == [None, None]
    assert shown[2:] == ['"basic";r=2;t=720', '"basic";r=1;t=720', '"basic";r=0;t=720']
    assert all(a.headers["ratelimit-policy"] == '"basic";q=5;w=3600' for a in answers[2:])


async def test_another_merchant_and_operators_are_not_held_back(
    limited: httpx.AsyncClient, database: object, operator: Tenant
) -> None:
    flooder = await make_tenant("Noisy shop")
    quiet = await make_tenant("Quiet shop")
    assert (await _spend(limited, flooder, 6))[-1].status_code == 429
    assert (await limited.get("/v1/merchants/me", headers=quiet.headers)).status_code == 200
    for _ in range(10):  # operator keys are not limited per merchant
        answer = await limited.get("/v1/merchants/me", headers=flooder.headers)
        assert answer.status_code == 429
        assert (await limited.get("/v1/api-keys", headers=operator.headers)).status_code == 200


async def test_the_single_event_hot_path_is_limited_and_a_refused_event_is_not_counted(
    client: httpx.AsyncClient, limited: httpx.AsyncClient, operator: Tenant
) -> None:
    tenant, _, _ = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    statuses = []
    for n in range(6):
        sent = await limited.post(
            "/v1/usage/events",
            json=event(f"limited-{n}", at("2026-10-10T09:00:00")),
            headers=tenant.headers,
        )
        statuses.append(sent.status_code)
    # The tier is looked up on the first request; the sixth is refused before any work.
    assert statuses == [201] * 5 + [429]
    orders = next(m for m in (await summary(client, tenant))["metrics"] if m["metric"] == "orders")
    assert orders["count"] == 5


async def test_each_tier_has_its_own_quota_and_each_process_enforces_its_share(
    client: httpx.AsyncClient, settings: Settings, operator: Tenant
) -> None:
    shared = create_app(
        Settings(
            environment="test",
            database=settings.database,
            rate_limits=RateLimitSettings(
                basic=5, advanced=9, custom=0, window_seconds=3600, api_processes=2
            ),
        )
    )
    advanced, _, _ = await merchant_on_clock(
        client, operator, "2026-10-10T09:00:00", plan="advanced"
    )
    custom, _, _ = await merchant_on_clock(client, operator, "2026-10-10T09:00:00", plan="custom")
    transport = httpx.ASGITransport(app=shared)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as one:
        answers = await _spend(one, advanced, 6)
        # advanced: 9 a window over two processes, so 5 here (rounded up).
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[-1].headers["ratelimit-policy"] == '"advanced";q=5;w=3600'
        # custom: 0, no limit.
        assert {a.status_code for a in await _spend(one, custom, 12)} == {200}


async def test_a_payment_setup_link_opened_without_a_key_counts_against_its_merchant(
    limited: httpx.AsyncClient, operator: Tenant
) -> None:
    tenant, created = await signup_answer(limited, operator, name="Link-opening shop")
    link = urlsplit(created["payment_setup"]["url"]).path
    # No Stripe in this app: each opening that is let through is a 409 (nothing to open).
    opened = [await limited.get(link) for _ in range(4)]
    assert [a.status_code for a in opened] == [409] * 4
    # The fifth request of the window is the merchant's own, with its key; then it is spent.
    assert (await limited.get("/v1/merchants/me", headers=tenant.headers)).status_code == 200
    refused = await limited.get(link)
    assert refused.status_code == 429
    assert refused.json()["type"] == "https://kefu-billing.dev/problems/rate-limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert (await limited.get("/v1/merchants/me", headers=tenant.headers)).status_code == 429
    # A link nobody holds is a 404 and costs no merchant anything.
    assert (await limited.get("/v1/pay/setup/anything")).status_code == 404
