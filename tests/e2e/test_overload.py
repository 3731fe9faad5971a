"""Overload: a ``billing serve`` with far more clients than it takes at once refuses the excess
at once (503, ``Retry-After``) instead of queueing it, keeps the requests in flight under its cap
and its memory bounded, and every client that retries as told gets its answer. Structural: no
time is measured; the client's timeout is generous and only guards against a hang."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import ServerProcess, printed_key, start_server

CAP = 4
CLIENTS = 120
EVENTS_EACH = 3
GENEROUS = 60.0


@pytest.fixture
def capped_server(fresh_database_url: str) -> Iterator[ServerProcess]:
    running = start_server(
        fresh_database_url,
        extra_env={
            "BILLING_MAX_IN_FLIGHT": str(CAP),
            "BILLING_RATE_LIMIT_BASIC": "0",  # this test is about the process, not a merchant
            "BILLING_LOG_LEVEL": "WARNING",
        },
    )
    yield running
    running.stop()


def _merchant(server: ServerProcess) -> tuple[dict[str, str], str, str]:
    made = httpx.post(
        f"{server.base_url}/v1/signup",
        json={
            "merchant": {"name": "Crowded shop", "contact_email": "c@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={
            "Authorization": f"Bearer {printed_key(server.output)}",
            "Idempotency-Key": "overload-signup",
        },
        timeout=GENEROUS,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    return (
        {"Authorization": f"Bearer {body['api_key']['key']}"},
        body["merchant"]["id"],
        body["subscription"]["current_period_start"],
    )


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=GENEROUS).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def _peak_rss_mb(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def test_a_full_server_refuses_the_next_request_at_once_and_still_answers_its_probes(
    capped_server: ServerProcess, fresh_database_url: str
) -> None:
    headers, merchant_id, start = _merchant(capped_server)
    held = {"transaction_id": "held", "metric": "orders", "occurred_at": start, "quantity": 1}
    # An uncommitted row with the same key: the server's inserts of it wait for this transaction,
    # so exactly CAP requests are in flight, and stay there, until it ends.
    blocker = await asyncpg.connect(fresh_database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(
        "INSERT INTO usage_transactions (merchant_id, transaction_id, content_hash, occurred_at)"
        " VALUES ($1::uuid, 'held', '\\x00', now())",
        merchant_id,
    )
    async with httpx.AsyncClient(
        base_url=capped_server.base_url, headers=headers, timeout=GENEROUS
    ) as http:
        waiting = [
            asyncio.create_task(http.post("/v1/usage/events", json=held)) for _ in range(CAP)
        ]
        for _ in range(600):
            if _metric(capped_server, "billing_requests_in_flight") == CAP:
                break
            await asyncio.sleep(0.05)
        assert _metric(capped_server, "billing_requests_in_flight") == CAP
        refused = await http.post("/v1/usage/events", json={**held, "transaction_id": "other"})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["type"] == "https://kefu-billing.dev/problems/overloaded"
        # Probes are never refused: the process is alive and can reach its database.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        await transaction.rollback()
        await blocker.close()
        answers = await asyncio.gather(*waiting)
    # The held requests went on: one stored it, the others found it stored.
    assert sorted(a.status_code for a in answers) == [200] * (CAP - 1) + [201]
    assert _metric(capped_server, "billing_requests_in_flight_peak") == CAP


async def test_many_more_clients_than_the_cap_all_get_their_answers_and_memory_stays_bounded(
    capped_server: ServerProcess,
) -> None:
    headers, _, start = _merchant(capped_server)
    statuses: Counter[int] = Counter()
    retry_afters: set[str] = set()

    async def client(number: int, http: httpx.AsyncClient) -> None:
        for n in range(EVENTS_EACH):
            event = {
                "transaction_id": f"crowd-{number}-{n}",
                "metric": "orders",
                "occurred_at": start,
                "quantity": 1,
            }
            while True:
                # A client timing out here fails the test (httpx raises): none may.
                answer = await http.post("/v1/usage/events", json=event)
                statuses[answer.status_code] += 1
                if answer.status_code != 503:
                    assert answer.status_code == 201, answer.text
                    break
                retry_afters.add(answer.headers["retry-after"])
                await asyncio.sleep(float(answer.headers["retry-after"]))

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=capped_server.base_url, headers=headers, timeout=GENEROUS, limits=limits
    ) as http:
        await asyncio.gather(*(client(number, http) for number in range(CLIENTS)))
        summary = (await http.get("/v1/usage/summary")).json()
    assert statuses[201] == CLIENTS * EVENTS_EACH
    assert statuses[503] > 0, "the crowd never filled the server: the test proves nothing"
    assert retry_afters == {"1"}
    assert set(statuses) <= {201, 503}
    orders = next(row for row in summary["metrics"] if row["metric"] == "orders")
    assert orders["count"] == CLIENTS * EVENTS_EACH
    assert _metric(capped_server, "billing_requests_in_flight_peak") <= CAP
    assert _peak_rss_mb(capped_server) < 400
