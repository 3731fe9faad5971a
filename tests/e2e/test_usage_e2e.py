"""The metered billing API against the real server process: concurrent senders of the same
transaction ids, and a server killed in the middle of a batch."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from service.bench.gauntlet.clients import retry_after
from service.db import engine as db_engine
from tests.e2e.conftest import ServerProcess, printed_key, start_server

BATCHES, BATCH = 24, 1_500
QUIET = {
    "BILLING_LOG_LEVEL": "WARNING",  # one log line per request would fill the output pipe
    "BILLING_RATE_LIMIT_BASIC": "0",  # one merchant floods on purpose: counting, not limits
}


@pytest.fixture
def quiet_server(fresh_database_url: str) -> Iterator[ServerProcess]:
    running = start_server(fresh_database_url, extra_env=QUIET)
    yield running
    running.stop()


def _signup(server: ServerProcess) -> tuple[dict[str, str], datetime]:
    created = httpx.post(
        f"{server.base_url}/v1/signup",
        json={
            "merchant": {"name": "Busy shop", "contact_email": "ops@busy.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={
            "Authorization": f"Bearer {printed_key(server.output)}",
            "Idempotency-Key": "e2e-busy-shop",
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    headers = {"Authorization": f"Bearer {body['api_key']['key']}"}
    return headers, datetime.fromisoformat(body["subscription"]["current_period_start"])


def _event(transaction_id: str, start: datetime, number: int) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "metric": "orders",
        "occurred_at": (start + timedelta(milliseconds=number % 500)).isoformat(),
        "quantity": 1,
        "gmv": {"amount_minor": 1_000 + number, "currency": "CNY"},
    }


async def _counted(database_url: str) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(ledger rows, (events, gmv) from raw events, (events, gmv) from the aggregates)."""
    connection = await asyncpg.connect(**db_engine.asyncpg_config(database_url))
    try:
        ledger = await connection.fetchval("SELECT count(*) FROM usage_transactions")
        raw = await connection.fetchrow(
            "SELECT count(*), coalesce(sum(gmv_minor), 0)::bigint FROM usage_events"
        )
        totals = await connection.fetchrow(
            "SELECT coalesce(sum(event_count), 0)::bigint, coalesce(sum(gmv_minor), 0)::bigint"
            " FROM usage_aggregates"
        )
    finally:
        await connection.close()
    assert raw is not None
    assert totals is not None
    return ledger, (raw[0], raw[1]), (totals[0], totals[1])


async def _stored_ids(database_url: str) -> set[str]:
    connection = await asyncpg.connect(**db_engine.asyncpg_config(database_url))
    try:
        rows = await connection.fetch("SELECT transaction_id FROM usage_transactions")
    finally:
        await connection.close()
    return {row["transaction_id"] for row in rows}


async def _post_as_clients_should(
    http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> httpx.Response:
    """As the README tells clients: a 503 (the service busy, or its database) or a 429 is sent
    again, the same body, after its ``Retry-After``; any other answer is the answer."""
    while True:
        answer = await http.post(path, json=body)
        if answer.status_code not in (429, 503):
            return answer
        await asyncio.sleep(retry_after(answer))


async def test_fifty_clients_sending_the_same_thousand_ids_count_each_once(
    quiet_server: ServerProcess, fresh_database_url: str
) -> None:
    headers, start = _signup(quiet_server)
    events = [_event(f"order-{n:04d}", start, n) for n in range(1_000)]
    accepted = 0
    ready = asyncio.Barrier(50)

    async def client(seed: int) -> None:
        nonlocal accepted
        mine = events[:]
        random.Random(seed).shuffle(mine)
        async with httpx.AsyncClient(
            base_url=quiet_server.base_url, headers=headers, timeout=60
        ) as http:
            await ready.wait()
            if seed % 5:  # 40 clients: all 1,000 ids in batches of 100, each in its own order
                for first in range(0, len(mine), 100):
                    answer = await _post_as_clients_should(
                        http, "/v1/usage/events/batch", {"events": mine[first : first + 100]}
                    )
                    assert answer.status_code == 200, answer.text
                    accepted += answer.json()["accepted"]
            else:  # 10 clients: 100 of the ids one request each
                for event in mine[:100]:
                    answer = await _post_as_clients_should(http, "/v1/usage/events", event)
                    assert answer.status_code in (200, 201), answer.text
                    accepted += answer.status_code == 201

    await asyncio.gather(*(client(seed) for seed in range(50)))
    assert accepted == 1_000
    async with httpx.AsyncClient(base_url=quiet_server.base_url, headers=headers) as http:
        summary = (await http.get("/v1/usage/summary")).json()
    orders = next(row for row in summary["metrics"] if row["metric"] == "orders")
    gmv = sum(1_000 + n for n in range(1_000))
    assert (orders["count"], orders["quantity"], orders["gmv_minor"]) == (1_000, "1000", gmv)
    ledger, raw, totals = await _counted(fresh_database_url)
    assert ledger == 1_000
    assert raw == totals == (1_000, gmv)


def test_a_server_killed_mid_batch_keeps_every_acknowledged_event_and_recounts_none(
    fresh_database_url: str,
) -> None:
    first = start_server(fresh_database_url, extra_env=QUIET)
    try:
        headers, start = _signup(first)
        batches = [
            [_event(f"crash-{b:02d}-{n:04d}", start, n) for n in range(BATCH)]
            for b in range(BATCHES)
        ]
        acknowledged: list[int] = []
        cut_off: list[int] = []
        wrong: list[str] = []

        def stream(share: list[int]) -> None:
            with httpx.Client(base_url=first.base_url, headers=headers, timeout=60) as http:
                for number in share:
                    try:
                        answer = http.post(
                            "/v1/usage/events/batch", json={"events": batches[number]}
                        )
                    except httpx.HTTPError:  # the kill: this batch's answer never came
                        cut_off.append(number)
                        return
                    if answer.status_code != 200 or answer.json()["accepted"] != BATCH:
                        wrong.append(answer.text[:300])
                    acknowledged.append(number)

        senders = [
            threading.Thread(target=stream, args=(list(range(k, BATCHES, 2)),), daemon=True)
            for k in range(2)
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(random.Random(6).uniform(0.005, 0.04))  # somewhere inside the next batches
        first.process.kill()  # SIGKILL: no shutdown, no flush, nothing graceful
        first.process.wait()
        for sender in senders:
            sender.join(timeout=30)
    finally:
        first.stop()
    assert not wrong
    assert len(acknowledged) >= 6
    assert cut_off, "the kill should have cut a batch off mid-flight"

    second = start_server(fresh_database_url, extra_env=QUIET)
    try:
        # Every event whose batch was acknowledged is there.
        stored = asyncio.run(_stored_ids(fresh_database_url))
        for number in acknowledged:
            assert {event["transaction_id"] for event in batches[number]} <= stored
        # The client retries everything: acknowledged batches are all duplicates, nothing twice.
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=60) as http:
            for number, batch in enumerate(batches):
                answer = http.post("/v1/usage/events/batch", json={"events": batch})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["accepted"] + body["duplicates"] == BATCH
                if number in acknowledged:
                    assert body["duplicates"] == BATCH
            summary = http.get("/v1/usage/summary").json()
    finally:
        second.stop()
    orders = next(row for row in summary["metrics"] if row["metric"] == "orders")
    assert orders["count"] == BATCHES * BATCH
    ledger, raw, totals = asyncio.run(_counted(fresh_database_url))
    assert ledger == BATCHES * BATCH
    assert raw == totals
    assert raw[0] == BATCHES * BATCH
