"""An app in production mode refuses test clocks (unless BILLING_ALLOW_TEST_CLOCKS=1): making
one, moving one, or signing a merchant up on one."""

import dataclasses
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from service.app import create_app
from service.settings import Settings, SettingsError, StripeSettings
from tests.integration.conftest import Tenant


@pytest.fixture
async def production_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    production = dataclasses.replace(settings, environment="production", allows_test_clocks=False)
    transport = httpx.ASGITransport(app=create_app(production))
    async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
        yield client


async def test_production_refuses_test_clocks(
    production_client: httpx.AsyncClient, client: httpx.AsyncClient, operator: Tenant
) -> None:
    made = await production_client.post(
        "/v1/test-clocks",
        json={"frozen_time": "2026-09-01T00:00:00+08:00", "name": "prod"},
        headers=operator.headers,
    )
    assert made.status_code == 403
    assert made.headers["content-type"].startswith("application/problem+json")
    assert "set BILLING_ALLOW_TEST_CLOCKS=1" in made.json()["detail"]
    # A clock made elsewhere cannot be moved, nor used at signup, in production.
    clock = await client.post(
        "/v1/test-clocks",
        json={"frozen_time": "2026-09-01T00:00:00+08:00", "name": "dev"},
        headers=operator.headers,
    )
    assert clock.status_code == 201, clock.text
    moved = await production_client.post(
        f"/v1/test-clocks/{clock.json()['id']}/advance",
        json={"frozen_time": "2026-10-01T00:00:00+08:00"},
        headers=operator.headers,
    )
    assert moved.status_code == 403
    signup = await production_client.post(
        "/v1/signup",
        json={
            "merchant": {"name": f"prod {uuid.uuid4().hex[:6]}", "contact_email": "p@shop.cn"},
            "plan": "basic",
            "test_clock_id": clock.json()["id"],
        },
        headers=operator.headers,
    )
    assert signup.status_code == 403
    assert "BILLING_ALLOW_TEST_CLOCKS" in signup.json()["detail"]


def test_an_app_in_production_refuses_a_stripe_key_without_a_webhook_secret(
    settings: Settings,
) -> None:
    unsafe = dataclasses.replace(
        settings, environment="production", stripe=StripeSettings(api_key="sk_live_x")
    )
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET"):
        create_app(unsafe)
