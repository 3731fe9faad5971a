# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Requests that share one statement (single usage events of a merchant, Stripe webhooks) all
get an answer when that statement is cancelled midway: none hangs.

The statement is made to wait on a row lock held by another session, so the test knows it is
in flight (``pg_stat_activity``) before cancelling the task that runs it, as a stopping server
would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from service.db.coalescing import Coalescer
from service.db.engine import Database
from service.usage import ingest
from tests.integration.conftest import Tenant
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    WEBHOOK_SECRET,
    stripe_app,
    stripe_client,
    stripe_settings,
)
from tests.integration.usage_helpers import at, event, merchant_on_clock
from webhooks import inbox
from webhooks.standin.webhook_sender import sign

# On Citus the statement may wait on a worker (a distributed function runs there):
# citus_stat_activity shows every node's sessions.
_WAITING_ON_A_LOCK = """
SELECT count(*) FROM {activity}
WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1
"""


@asynccontextmanager
async def _holding(database: Database, sql: str, *args: Any) -> AsyncIterator[None]:
    """Another session's open transaction that wrote ``sql``: writers of the same key wait."""
    connection: asyncpg.Connection = await database.pool.acquire()
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(sql, *args)
        yield
    finally:
        await transaction.rollback()
        await database.pool.release(connection)


async def _until_waiting(database: Database, query_start: str) -> None:
    has_citus = await database.pool.fetchval("SELECT to_regclass('citus_stat_activity')")
    waiting = _WAITING_ON_A_LOCK.format(
        activity="citus_stat_activity" if has_citus else "pg_stat_activity"
    )
    for _ in range(1000):
        if await database.pool.fetchval(waiting, "%" + query_start + "%"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the shared statement never started waiting")


async def _until_queued(coalescer: Coalescer[Any, Any, Any], key: Any, count: int) -> None:
    """Until ``count`` requests wait behind the statement in flight (a loaded machine may take
    a while to parse them)."""
    for _ in range(3000):
        if coalescer.queued(key) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{coalescer.queued(key)} of {count} requests ever queued")


def _webhook(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": event_id, "object": "event", "type": "customer.updated", "created": 1_790_000_000}
    ).encode()
    signature = sign(body, WEBHOOK_SECRET, int(time.time()))
    return body, {"Stripe-Signature": signature, "Content-Type": "application/json"}


async def test_webhooks_sharing_a_cancelled_insert_are_all_answered(
    database: Database, stripe_client: httpx.AsyncClient
) -> None:
    stamp = time.time_ns()
    held, queued = f"evt_held_{stamp}", [f"evt_queued_{stamp}_{n}" for n in range(3)]
    insert = (
        "INSERT INTO stripe_inbox (event_id, event_type, event_created, payload)"
        " VALUES ($1, 'customer.updated', 0, '{}')"
    )
    async with _holding(database, insert, held):
        first = asyncio.create_task(
            stripe_client.post(
                "/webhooks/stripe", content=_webhook(held)[0], headers=_webhook(held)[1]
            )
        )
        await _until_waiting(database, "\nINSERT INTO stripe_inbox")
        # These queue behind the insert in flight, for the next one.
        rest = [
            asyncio.create_task(
                stripe_client.post("/webhooks/stripe", content=body, headers=headers)
            )
            for body, headers in map(_webhook, queued)
        ]
        await _until_queued(inbox._writer, None, len(queued))
        flush = inbox._writer.flush_task(None)
        assert flush is not None
        flush.cancel()  # the server is stopping
        answers = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=30)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "send the request again" in answer.json()["detail"]
    assert inbox._writer.keys_in_flight == 0
    # Stripe sends them again; nothing was stored, so now they are new.
    again = await stripe_client.post(
        "/webhooks/stripe", content=_webhook(held)[0], headers=_webhook(held)[1]
    )
    assert again.json() == {"received": True, "event_id": held, "duplicate": False}


async def test_single_usage_events_sharing_a_cancelled_statement_are_all_answered(
    database: Database, client: httpx.AsyncClient, operator: Tenant
) -> None:
    tenant, _, _ = await merchant_on_clock(client, operator, "2026-03-01T10:00:00")
    hash_of_nothing = b"\x00" * 16
    insert = (
        "INSERT INTO usage_transactions (merchant_id, transaction_id, content_hash, occurred_at)"
        " VALUES ($1, 'held-order', $2, now())"
    )
    url = "/v1/usage/events"
    async with _holding(database, insert, tenant.merchant_id, hash_of_nothing):
        first = asyncio.create_task(
            client.post(
                url, json=event("held-order", at("2026-03-01T10:00:00")), headers=tenant.headers
            )
        )
        await _until_waiting(database, "usage_store(")  # on a worker: public.usage_store(
        rest = [
            asyncio.create_task(
                client.post(
                    url,
                    json=event(f"queued-{n}", at("2026-03-01T10:00:00")),
                    headers=tenant.headers,
                )
            )
            for n in range(3)
        ]
        coalescer = ingest._single_events[300]
        await _until_queued(coalescer, tenant.merchant_id, len(rest))
        flush = coalescer.flush_task(tenant.merchant_id)
        assert flush is not None
        flush.cancel()
        answers = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=30)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert "repeating it is safe" in answer.json()["detail"]
    assert coalescer.keys_in_flight == 0
    # Sent again, each is counted once.
    for n in range(3):
        again = await client.post(
            url, json=event(f"queued-{n}", at("2026-03-01T10:00:00")), headers=tenant.headers
        )
        assert again.status_code == 201, again.text
