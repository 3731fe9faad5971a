"""SIGTERM, the polite stop (a deploy, a scale-down): an API server finishes the requests in
flight and takes no new ones; a worker finishes the period it is closing. Each test holds a row
lock so that the work in hand is provably still in hand when the signal arrives."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from typing import Any

import asyncpg
import httpx

from tests.e2e.conftest import ServerProcess, printed_key, start_server, start_worker

GENEROUS = 60.0


async def _someone_waits_on_a_lock(database_url: str) -> bool:
    """A session of this database waits on a row lock. (Asked on a connection of its own:
    inside a transaction pg_stat_activity is a snapshot taken once; and the statements are
    longer than it keeps, so no text is matched.) On a Citus coordinator the wait happens on
    the worker node holding the merchant's shard: ``citus_lock_waits`` sees it there."""
    watcher = await asyncpg.connect(database_url)
    try:
        if await watcher.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"):
            return bool(await watcher.fetchval("SELECT count(*) FROM citus_lock_waits"))
        return bool(
            await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
        )
    finally:
        await watcher.close()


async def _until(what: str, check: Any, within: float = GENEROUS) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _sign_up(server: ServerProcess, clock: str | None = None) -> dict[str, Any]:
    made = httpx.post(
        f"{server.base_url}/v1/signup",
        json={
            "merchant": {"name": "Closing shop", "contact_email": "c@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
            **({"test_clock_id": clock} if clock else {}),
        },
        headers={
            "Authorization": f"Bearer {printed_key(server.output)}",
            "Idempotency-Key": "shutdown-signup",
        },
        timeout=GENEROUS,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def _with_march_ended(server: ServerProcess) -> dict[str, Any]:
    """A merchant that signed up on 10 March, on a clock now past March and its grace."""
    operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
    with httpx.Client(base_url=server.base_url, timeout=GENEROUS) as http:
        clock = http.post(
            "/v1/test-clocks",
            json={"frozen_time": "2026-03-10T00:00:00+08:00", "name": "closing"},
            headers=operator,
        ).json()["id"]
        made = _sign_up(server, clock)
        http.post(
            f"/v1/test-clocks/{clock}/advance",
            json={"frozen_time": "2026-04-03T01:00:00+08:00"},
            headers=operator,
        ).raise_for_status()
    return made


async def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections(
    fresh_database_url: str,
) -> None:
    server = start_server(fresh_database_url)
    blocker = await asyncpg.connect(fresh_database_url)
    try:
        made = _sign_up(server)
        merchant_id = made["merchant"]["id"]
        event = {
            "transaction_id": "in-flight",
            "metric": "orders",
            "occurred_at": made["subscription"]["current_period_start"],
            "quantity": 1,
        }
        # The server's insert of this id waits for the test's uncommitted one.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO usage_transactions (merchant_id, transaction_id, content_hash,"
            " occurred_at) VALUES ($1::uuid, 'in-flight', '\\x00', now())",
            merchant_id,
        )
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {made['api_key']['key']}"},
            timeout=GENEROUS,
        ) as http:
            in_flight = asyncio.create_task(http.post("/v1/usage/events", json=event))

            await _until(
                "the request to wait on the row lock",
                lambda: _someone_waits_on_a_lock(fresh_database_url),
            )
            server.process.send_signal(signal.SIGTERM)

            async def refusing() -> bool:
                try:
                    async with httpx.AsyncClient(timeout=5) as fresh:
                        await fresh.get(f"{server.base_url}/healthz")
                except httpx.ConnectError:
                    return True
                except httpx.TransportError:
                    # Taken just before the listener closed and then dropped, or slow to come
                    # on a busy machine: not a refusal yet, ask again.
                    return False
                return False

            await _until("new connections to be refused", refusing)
            assert server.process.poll() is None, "it left before the request in flight ended"
            await transaction.rollback()
            answer = await in_flight
        assert answer.status_code == 201, answer.text
        assert server.process.wait(timeout=GENEROUS) == 0
        assert (
            await blocker.fetchval(
                "SELECT count(*) FROM usage_transactions WHERE transaction_id = 'in-flight'"
            )
            == 1
        )
    finally:
        await blocker.close()
        server.stop()


async def test_sigterm_lets_a_worker_finish_the_period_it_is_closing(
    fresh_database_url: str,
) -> None:
    server = start_server(fresh_database_url)
    made = _with_march_ended(server)
    server.stop()
    merchant_id, subscription_id = made["merchant"]["id"], made["subscription"]["id"]
    blocker = await asyncpg.connect(fresh_database_url)
    worker = None
    try:
        period = await blocker.fetchrow(
            "SELECT period_start, period_end FROM subscription_periods"
            " WHERE merchant_id = $1::uuid AND status = 'ended'",
            merchant_id,
        )
        # The worker's insert of March's invoice waits for this uncommitted one (the key that
        # makes a period's invoice unique).
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO invoices (merchant_id, subscription_id, kind, period_start, period_end,"
            " status, currency, plan_code, plan_version, subtotal_minor, discounts_minor,"
            " credits_minor, tax_rate, tax_minor, total_minor, amount_due_minor, created_at)"
            " VALUES ($1::uuid, $2::uuid, 'period', $3, $4, 'draft', 'CNY', 'basic', 1,"
            " 0, 0, 0, 0, 0, 0, 0, now())",
            merchant_id,
            subscription_id,
            period["period_start"],
            period["period_end"],
        )
        worker = start_worker(fresh_database_url, "--interval", "0.2")

        await _until(
            "the worker to be closing March", lambda: _someone_waits_on_a_lock(fresh_database_url)
        )
        worker.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1)  # a worker that dropped its period would be gone by now
        assert worker.poll() is None, worker.output()
        await transaction.rollback()
        output = worker.finish(timeout=GENEROUS)
        assert worker.returncode == 0, output
        assert '"worker_stopped"' in output
        march = await blocker.fetchrow(
            "SELECT i.status, i.number, count(l.id) AS lines FROM invoices i"
            " JOIN invoice_lines l ON l.merchant_id = i.merchant_id AND l.invoice_id = i.id"
            " WHERE i.merchant_id = $1::uuid AND i.kind = 'period' AND i.period_start = $2"
            " GROUP BY i.merchant_id, i.id",
            merchant_id,
            period["period_start"],
        )
        assert march is not None, output
        assert march["status"] != "draft"
        assert re.search(r"\d+$", march["number"])
        assert march["lines"] > 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.process.kill()
        await blocker.close()
