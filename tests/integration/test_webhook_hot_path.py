"""``POST /webhooks/stripe`` is served by its hot path: the same answers, byte for byte, as the
Litestar handler beneath it, and the same rows stored; only an oversize body reaches the
handler."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from service.db.engine import current as current_database
from tests.integration.conftest import hand_everything_over
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    WEBHOOK_SECRET,
    customer_event,
    stripe_app,
    stripe_client,
    stripe_settings,
)
from webhooks import endpoint
from webhooks.standin.webhook_sender import sign

CAP = 1024 * 1024  # the shipped STRIPE_WEBHOOK_MAX_BODY_BYTES


def _event(event_id: str, **fields: Any) -> bytes:
    return json.dumps(customer_event(event_id, **fields)).encode()


def _signed(body: bytes, *, secret: str = WEBHOOK_SECRET, age: int = 0) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "stripe-signature": sign(body, secret, int(time.time()) - age),
    }


async def _chunks(body: bytes) -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


Delivery = tuple[bytes, dict[str, str]]


def _script(prefix: str) -> list[tuple[str, Delivery]]:
    """One of each answer the endpoint gives with a secret; every event id starts ``prefix``."""
    new = _event(f"evt_{prefix}_new")
    deep = _event(f"evt_{prefix}_deep", data={"object": json.loads("[" * 40 + "]" * 40)})
    unreadable = b'{"id": "evt_' + prefix.encode() + b'_cut", "type": '
    oversize = _event(f"evt_{prefix}_big", padding="x" * CAP)
    return [
        ("new", (new, _signed(new))),
        ("duplicate", (new, _signed(new))),
        ("no signature", (new, {"content-type": "application/json"})),
        ("forged", (new, _signed(new, secret="whsec_someone_else"))),
        ("stale", (new, _signed(new, age=600))),
        ("future", (new, _signed(new, age=-600))),
        ("tampered", (new + b" ", _signed(new))),
        ("no body, no signature", (b"", {})),
        ("parked: too deep", (deep, _signed(deep))),
        ("parked: unreadable", (unreadable, _signed(unreadable))),
        ("413 declared", (oversize, _signed(oversize))),
    ]


def _normalized(response: httpx.Response, prefix: str) -> tuple[int, str, str]:
    text = response.text.replace(response.headers["x-request-id"], "<request-id>")
    text = re.sub(r"unreadable_[0-9a-f]{40}", "unreadable_<hash>", text.replace(prefix, "<p>"))
    return response.status_code, response.headers["content-type"], text


async def _answers(
    client: httpx.AsyncClient, no_secret: httpx.AsyncClient, prefix: str
) -> dict[str, tuple[int, str, str]]:
    answers = {}
    for label, (body, headers) in _script(prefix):
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
        answers[label] = _normalized(response, prefix)
    oversize = _event(f"evt_{prefix}_streamed", padding="x" * CAP)
    streamed = await client.post(
        "/webhooks/stripe", content=_chunks(oversize), headers=_signed(oversize)
    )
    answers["413 streamed"] = _normalized(streamed, prefix)
    refused = _event(f"evt_{prefix}_no_secret")
    without = await no_secret.post("/webhooks/stripe", content=refused, headers=_signed(refused))
    answers["no secret"] = _normalized(without, prefix)
    return answers


async def _stored(prefix: str) -> list[tuple[str, str, str | None]]:
    rows = await current_database().pool.fetch(
        "SELECT event_id, status, last_error FROM stripe_inbox"
        " WHERE event_id LIKE $1 OR position($2 in raw) > 0 ORDER BY event_id",
        f"evt\\_{prefix}\\_%",
        f"evt_{prefix}_".encode(),
    )
    return [
        (
            re.sub(r"unreadable_[0-9a-f]{40}", "unreadable_<hash>", row["event_id"]).replace(
                prefix, "<p>"
            ),
            row["status"],
            row["last_error"],
        )
        for row in rows
    ]


@pytest.fixture
def handler_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each body the Litestar handler read (its limit): who served which request."""
    reads: list[int] = []
    read_capped = endpoint._read_capped

    async def counted(request: Any, limit: int) -> bytes:
        reads.append(limit)
        return await read_capped(request, limit)

    monkeypatch.setattr(endpoint, "_read_capped", counted)
    return reads


@pytest.fixture
def handler_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make the hot path hand every request to the Litestar handler beneath it."""

    return lambda: hand_everything_over(monkeypatch, endpoint.WebhookHotPath)


async def test_the_hot_path_answers_and_stores_exactly_as_the_litestar_handler(
    stripe_client: httpx.AsyncClient,  # noqa: F811 - the fixture imported above
    client: httpx.AsyncClient,
    handler_reads: list[int],
    handler_only: Callable[[], None],
) -> None:
    served = await _answers(stripe_client, client, "hot")
    served_rows = await _stored("hot")
    # The hot path served everything but the oversize bodies, which it handed over.
    assert len(handler_reads) == 2
    handler_only()
    by_handler = await _answers(stripe_client, client, "std")
    # Switched off, the handler reads every body (but the one refused for want of a secret).
    assert len(handler_reads) == 2 + len(_script("std")) + 1
    assert {status for status, _, _ in served.values()} == {200, 400, 413}
    assert served["duplicate"][2] == served["new"][2].replace(
        '"duplicate":false', '"duplicate":true'
    )
    for label, answer in served.items():
        assert answer == by_handler[label], label
    assert served_rows == await _stored("std")
    statuses = [status for _, status, _ in served_rows]
    assert statuses == ["parked", "pending", "parked"]  # deep, new, the unreadable one
