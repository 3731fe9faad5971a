"""Outgoing webhooks with real processes: ``billing serve`` takes the endpoint and the changes,
a ``billing worker`` finds the usage thresholds and delivers everything over HTTP to a receiver on
loopback, which checks each signature with the README's code; ``billing events replay`` sends an
event again."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BILLING, ServerProcess, printed_key, start_server
from tests.integration.outgoing_helpers import Receiver, receiver_example, receiving

ALLOW = {"BILLING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "1"}


@pytest.fixture
def world(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ServerProcess, Receiver, dict[str, str]]]:
    server = start_server(fresh_database_url, extra_env=ALLOW)
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "BILLING_ENV": "test",
        "BILLING_LOG_FORMAT": "json",
        "BILLING_USAGE_WATCH_SECONDS": "0",
        **ALLOW,
    }
    worker = subprocess.Popen(
        [BILLING, "worker", "--interval", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    example = receiver_example("set-below", monkeypatch)
    with receiving(example.verify) as receiver:
        yield server, receiver, env
    worker.terminate()
    worker.wait(timeout=15)
    server.stop()


def _wait_for(receiver: Receiver, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(receiver.arrivals) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {receiver.types()}, wanted {count} deliveries")
        time.sleep(0.1)
    return receiver.types()


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def test_the_worker_delivers_a_merchants_events_signed_and_in_order(
    world: tuple[ServerProcess, Receiver, dict[str, str]],
) -> None:
    server, receiver, env = world
    operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        endpoint = _ok(
            http.post(
                "/v1/webhook-endpoints",
                json={"url": receiver.url, "events": ["*"], "description": "e2e"},
                headers=operator,
            ),
            201,
        )
        receiver.secret = endpoint["secret"]
        clock = _ok(
            http.post(
                "/v1/test-clocks",
                json={"frozen_time": "2026-03-01T00:00:00+08:00", "name": "e2e webhooks"},
                headers=operator,
            ),
            201,
        )["id"]
        made = _ok(
            http.post(
                "/v1/signup",
                json={
                    "merchant": {"name": "E2E webhook shop", "contact_email": "e2e@shop.cn"},
                    "plan": "basic",
                    "trial_days": 0,
                    "test_clock_id": clock,
                },
                headers={**operator, "Idempotency-Key": "e2e-webhook-shop"},
            ),
            201,
        )
        merchant = {"Authorization": f"Bearer {made['api_key']['key']}"}
        assert _wait_for(receiver, 2) == ["subscription.created", "invoice.finalized"]

        _ok(
            http.post(
                f"/v1/test-clocks/{clock}/advance",
                json={"frozen_time": "2026-03-20T00:00:00+08:00"},
                headers=operator,
            )
        )
        for n, quantity in ((1, 2500), (2, 600)):
            _ok(
                http.post(
                    "/v1/usage/events",
                    json={
                        "transaction_id": f"e2e-{n}",
                        "metric": "orders",
                        "occurred_at": "2026-03-10T10:00:00+08:00",
                        "quantity": quantity,
                    },
                    headers=merchant,
                ),
                201,
            )
            _wait_for(receiver, 2 + n)
        _ok(
            http.post(
                f"/v1/test-clocks/{clock}/advance",
                json={"frozen_time": "2026-04-03T00:00:00+08:00"},
                headers=operator,
            )
        )
        types = _wait_for(receiver, 6)
        assert types == [
            "subscription.created",
            "invoice.finalized",
            "usage.threshold_reached",
            "usage.threshold_reached",
            "subscription.updated",
            "invoice.finalized",
        ]
        assert all(arrival.event is not None for arrival in receiver.arrivals)
        assert set(Counter(a.delivery_id for a in receiver.arrivals).values()) == {1}
        events = receiver.events()
        assert [e["data"]["threshold"]["percent"] for e in events[2:4]] == [80, 100]
        assert events[5]["data"]["object"]["total_minor"] == 9900 + 5000  # April + 100 orders

        log = _ok(http.get("/v1/webhook-events", headers=operator))
        assert [e["type"] for e in reversed(log)] == types
        assert {d["status"] for e in log for d in e["deliveries"]} == {"delivered"}

    replayed = subprocess.run(
        [BILLING, "events", "replay", events[0]["id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "queued" in replayed.stdout
    _wait_for(receiver, 7)
    again = receiver.arrivals[-1]
    assert again.event is not None
    assert again.event["id"] == events[0]["id"]
    assert again.delivery_id != receiver.arrivals[0].delivery_id
    assert endpoint["secret"] not in replayed.stdout + replayed.stderr
    listed = subprocess.run(
        [BILLING, "events", "list", "--limit", "10"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert events[0]["id"] in listed.stdout
    assert "usage.threshold_reached" in listed.stdout
