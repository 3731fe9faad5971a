"""Stripe webhooks at the edges: the shipped tolerance refuses old and future signatures, a
body over the cap is a 413, and a validly signed event is never refused for its content: what
cannot be processed is kept as raw bytes and parked with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.db.engine import current as current_database
from service.settings import Settings, SettingsError
from tests.integration.stripe_helpers import WEBHOOK_SECRET
from tests.integration.stripe_helpers import customer_event as _event
from webhooks import inbox
from webhooks.standin.webhook_sender import sign


@pytest.fixture(scope="module")
async def shipped(database_dsn: str, database: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app as shipped: settings read from an environment that names only the database
    and the webhook secret, so every limit and the tolerance are the defaults."""
    settings = Settings.from_env(
        {"DATABASE_URL": database_dsn, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _post(client: httpx.AsyncClient, body: bytes, signed_at: int) -> httpx.Response:
    return await client.post(
        "/webhooks/stripe",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign(body, WEBHOOK_SECRET, signed_at),
        },
    )


async def _row(event_id: str) -> dict[str, Any] | None:
    row = await current_database().pool.fetchrow(
        "SELECT status, raw, payload IS NULL AS has_no_payload, last_error, event_created"
        " FROM stripe_inbox WHERE event_id = $1",
        event_id,
    )
    return dict(row) if row is not None else None


async def test_the_shipped_tolerance_refuses_old_and_future_signatures(
    shipped: httpx.AsyncClient,
) -> None:
    now = int(time.time())
    for label, signed_at in [
        ("ten minutes old", now - 600),
        ("ten minutes ahead", now + 600),
        ("a day ahead", now + 86_400),
    ]:
        body = json.dumps(_event(f"evt_tolerance_{label.replace(' ', '_')}")).encode()
        response = await _post(shipped, body, signed_at)
        assert response.status_code == 400, label
        assert response.json()["type"].endswith("/bad-webhook")
    for label, signed_at in [("a minute old", now - 60), ("a minute ahead", now + 60)]:
        event_id = f"evt_tolerance_ok_{label.replace(' ', '_')}"
        response = await _post(shipped, json.dumps(_event(event_id)).encode(), signed_at)
        assert response.status_code == 200, (label, response.text)


def test_a_tolerance_of_zero_is_refused_at_start() -> None:
    # The SDK reads 0 as "never check the age": a replayed event would be accepted forever.
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_TOLERANCE_SECONDS"):
        Settings.from_env({"STRIPE_WEBHOOK_TOLERANCE_SECONDS": "0"})


async def test_a_body_over_the_cap_is_a_413_and_nothing_is_stored(
    shipped: httpx.AsyncClient,
) -> None:
    padding = "x" * (5 * 1024 * 1024)
    body = json.dumps(_event("evt_too_big", padding=padding)).encode()
    response = await _post(shipped, body, int(time.time()))
    assert response.status_code == 413, response.text
    assert response.json()["type"].endswith("/payload-too-large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for offset in range(0, len(body), 64 * 1024):
            yield body[offset : offset + 64 * 1024]

    streamed = await shipped.post(
        "/webhooks/stripe",
        content=chunks(),
        headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, int(time.time()))},
    )
    assert streamed.status_code == 413
    assert await _row("evt_too_big") is None


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    ("event_id", "body", "reason"),
    [
        ("evt_deep_40", '{"id":"evt_deep_40","type":"customer.updated","created":1,'
         '"data":{"object":' + _nested(40) + "}}", "nested deeper"),
        ("evt_deep_5000", '{"id":"evt_deep_5000","type":"customer.updated","created":1,'
         '"data":{"object":' + _nested(5000) + "}}", "read"),
        ("evt_created_2_70", json.dumps(_event("evt_created_2_70", created=2**70)), "64 bits"),
        ("evt_nul", json.dumps(_event("evt_nul", data={"object": {"name": "a\u0000b"}})), "NUL"),
        ("evt_huge_number", '{"id":"evt_huge_number","type":"customer.updated","created":1,'
         '"data":{"object":{"amount":1e999999}}}', "read"),
        # JSON that reads, that jsonb refuses (more decimals than numeric holds).
        ("evt_tiny_number", '{"id":"evt_tiny_number","type":"customer.updated","created":1,'
         '"data":{"object":{"amount":0.' + "0" * 17_000 + '1}}}', "PostgreSQL"),
    ],
)  # fmt: skip
async def test_a_signed_event_that_cannot_be_processed_is_kept_raw_and_parked(
    shipped: httpx.AsyncClient, event_id: str, body: str, reason: str
) -> None:
    raw = body.encode()
    neighbour = json.dumps(_event(f"{event_id}_neighbour")).encode()
    now = int(time.time())
    # Sent together, so the neighbour may share the inbox's multi-row insert: it is stored.
    response, beside = await asyncio.gather(
        _post(shipped, raw, now), _post(shipped, neighbour, now)
    )
    assert response.status_code == 200, response.text
    assert beside.status_code == 200, beside.text
    stored_id = response.json()["event_id"]
    row = await _row(stored_id)
    assert row is not None
    assert row["status"] == "parked"
    assert bytes(row["raw"]) == raw
    assert row["has_no_payload"]
    assert reason in row["last_error"]
    assert (await _row(f"{event_id}_neighbour"))["status"] == "pending"  # type: ignore[index]

    again = await _post(shipped, raw, now)  # a redelivery is a duplicate, stored once
    assert again.json() == {"received": True, "event_id": stored_id, "duplicate": True}
    assert await inbox.replay(stored_id, now=datetime.now(UTC)) == "parked"
    assert (await _row(stored_id))["status"] == "parked"  # type: ignore[index]
