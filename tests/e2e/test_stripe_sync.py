"""The Stripe sync with real processes: ``billing serve`` receives the stand-in's signed
webhooks over HTTP, two ``billing worker`` processes side by side push the outbox and process
the inbox. Every merchant saves a card through its payment-setup link; its invoice is pushed
once and paid by webhook."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import (
    BILLING,
    ServerProcess,
    printed_key,
    save_card,
    start_server,
    stripe_env,
)
from webhooks.standin import StandIn

SECRET = "whsec_e2e_" + "1" * 20
MERCHANTS = 4


@pytest.fixture
def stripe_world(fresh_database_url: str) -> Iterator[tuple[ServerProcess, StandIn, list]]:
    standin = StandIn.start(port=0, webhook_secret=SECRET)
    server = start_server(fresh_database_url, extra_env=stripe_env(standin, SECRET))
    standin.webhooks.url = f"{server.base_url}/webhooks/stripe"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "BILLING_ENV": "test",
        "BILLING_LOG_FORMAT": "json",
        **stripe_env(standin, SECRET),
    }
    workers = [
        subprocess.Popen(
            [BILLING, "worker", "--interval", "0.2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for _ in range(2)
    ]
    yield server, standin, workers
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=15)
    standin.stop()
    server.stop()


def test_two_workers_push_each_invoice_once_and_webhooks_mark_it_paid(
    stripe_world: tuple[ServerProcess, StandIn, list],
) -> None:
    server, standin, _ = stripe_world
    operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
    merchant_keys = []
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        clock = http.post(
            "/v1/test-clocks",
            json={"frozen_time": "2026-03-10T00:00:00+08:00", "name": "e2e stripe"},
            headers=operator,
        )
        assert clock.status_code == 201, clock.text
        for n in range(MERCHANTS):
            made = http.post(
                "/v1/signup",
                json={
                    "merchant": {"name": f"E2E shop {n}", "contact_email": f"e2e{n}@shop.cn"},
                    "plan": "basic",
                    "trial_days": 0,
                    "test_clock_id": clock.json()["id"],
                },
                headers={**operator, "Idempotency-Key": f"e2e-signup-{n}"},
            )
            assert made.status_code == 201, made.text
            merchant_keys.append({"Authorization": f"Bearer {made.json()['api_key']['key']}"})
            # The merchant saves a card through its link: Stripe would not pay without one.
            save_card(http, made.json()["payment_setup"]["url"], standin)
        deadline = time.monotonic() + 40
        statuses: list[str] = []
        while time.monotonic() < deadline:
            statuses = []
            for key in merchant_keys:
                listed = http.get("/v1/invoices", headers=key)
                assert listed.status_code == 200
                statuses += [invoice["status"] for invoice in listed.json()]
            if len(statuses) == MERCHANTS and set(statuses) == {"paid"}:
                break
            time.sleep(0.3)
    assert statuses == ["paid"] * MERCHANTS
    assert standin.count("customer") == MERCHANTS
    assert standin.count("invoice") == MERCHANTS
    assert standin.count("charge") == MERCHANTS
    assert all(invoice["status"] == "paid" for invoice in standin.objects("invoice"))
