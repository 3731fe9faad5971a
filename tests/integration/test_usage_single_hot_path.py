"""``POST /v1/usage/events`` is served by its hot path: the same answers, byte for byte, as the
Litestar handler beneath it; what the hot path cannot decode still gets the framework's 400/413."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar
from litestar.types import Message

from service.observability import logging as billing_logging
from service.usage import single
from tests.integration.conftest import Tenant, hand_everything_over, post_scope
from tests.integration.usage_helpers import advance, at, event, merchant_on_clock

NOW = "2026-10-20T12:00:00"
WHEN = at("2026-10-15T08:00:00")


@pytest.fixture
async def shop(client: AsyncClient, operator: Tenant) -> Tenant:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, NOW)
    return tenant


def _script(prefix: str) -> list[dict[str, Any] | bytes]:
    """One of each answer the endpoint gives; every id starts with ``prefix``."""
    hours = {"transaction_id": f"{prefix}-h", "metric": "support_hours", "occurred_at": WHEN}
    return [
        event(f"{prefix}-a", WHEN, gmv=4_990, properties={"sku": "card-50"}),  # accepted
        event(f"{prefix}-a", WHEN, gmv=4_990, properties={"sku": "card-50"}),  # duplicate
        event(f"{prefix}-a", WHEN, gmv=5_000),  # conflict
        {**hours, "quantity": "1.5"},  # accepted, a decimal quantity
        event(f"{prefix}-s", WHEN, quantity="2"),  # a number in a string: as Litestar converts
        event(f"{prefix}-m", WHEN, metric="visits"),  # rejected: unknown metric
        event(f"{prefix}-f", at("2026-10-21T12:00:00")),  # rejected: in the future
        event(f"{prefix}-c", WHEN, gmv=100, currency="USD"),  # rejected: another currency
        event(f"{prefix}-z", WHEN, quantity=0),  # rejected: not positive
        event(f"{prefix}-x", WHEN, colour="red"),  # 400: unknown field
        event(f"{prefix}-t", "yesterday"),  # 400: not a date
        {"metric": "orders", "occurred_at": WHEN, "quantity": 1},  # 400: no transaction id
        b'{"transaction_id": "' + prefix.encode() + b'-j", "metric": ',  # 400: not JSON
        b"[]",  # 400: not an object
        b"",  # 400: no body
    ]


async def _answers(client: AsyncClient, shop: Tenant, prefix: str) -> list[tuple[Any, ...]]:
    answers = []
    for body in _script(prefix):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await client.post(
            "/v1/usage/events",
            content=content,
            headers={**shop.headers, "content-type": "application/json"},
        )
        document = response.json()
        assert (
            document.pop("request_id", response.headers["x-request-id"])
            == (response.headers["x-request-id"])
        )
        text = json.dumps(document, sort_keys=True).replace(prefix, "<id>")
        answers.append((response.status_code, response.headers["content-type"], text))
    return answers


@pytest.fixture
def handler_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make the hot path hand every request to the Litestar handler beneath it."""

    return lambda: hand_everything_over(monkeypatch, single.SingleEventHotPath)


async def test_the_hot_path_answers_exactly_as_the_litestar_handler(
    client: AsyncClient, shop: Tenant, handler_only: Callable[[], None]
) -> None:
    served = await _answers(client, shop, "hot")
    handler_only()
    by_handler = await _answers(client, shop, "std")
    assert {status for status, _, _ in served} == {200, 201, 400, 409, 422}
    for request, (mine, theirs) in enumerate(zip(served, by_handler, strict=True)):
        assert mine == theirs, f"request {request} of the script"


async def test_an_oversize_event_is_a_413_declared_or_streamed(
    client: AsyncClient, shop: Tenant
) -> None:
    limit = 8 * 1024 * 1024
    padding = {"note": "x" * limit}
    body = json.dumps(event("big-1", WHEN, properties=padding)).encode()
    declared = await client.post(
        "/v1/usage/events",
        content=body,
        headers={**shop.headers, "content-type": "application/json"},
    )
    assert declared.status_code == 413, declared.text

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: sent chunked
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    streamed = await client.post(
        "/v1/usage/events",
        content=chunks(),
        headers={**shop.headers, "content-type": "application/json"},
    )
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["type"].endswith("/payload-too-large")
    # Neither was recorded: the id is still free.
    fresh = await client.post("/v1/usage/events", json=event("big-1", WHEN), headers=shop.headers)
    assert fresh.status_code == 201, fresh.text


async def _call_asgi(
    app: Litestar, tenant: Tenant, headers: list[tuple[bytes, bytes]], messages: list[Message]
) -> list[Message]:
    """Drive the app as a server would, with ``messages`` as what the client sends."""
    scope = post_scope("/v1/usage/events", tenant.key, headers)
    incoming = iter(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return next(incoming, {"type": "http.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_a_client_gone_before_its_body_ended_records_nothing(
    app: Litestar, client: AsyncClient, shop: Tenant
) -> None:
    body = json.dumps(event("gone-1", WHEN)).encode()  # a whole event, but more was announced
    sent = await _call_asgi(
        app,
        shop,
        [(b"content-type", b"application/json")],
        [{"type": "http.request", "body": body, "more_body": True}, {"type": "http.disconnect"}],
    )
    assert sent == []  # nobody to answer
    again = await client.post("/v1/usage/events", json=event("gone-1", WHEN), headers=shop.headers)
    assert again.status_code == 201, again.text  # the id was never taken


async def test_a_content_length_that_is_not_a_number_is_refused(
    app: Litestar, client: AsyncClient, shop: Tenant
) -> None:
    body = json.dumps(event("odd-length-1", WHEN)).encode()
    sent = await _call_asgi(
        app,
        shop,
        [(b"content-type", b"application/json"), (b"content-length", b"12x")],
        [{"type": "http.request", "body": body, "more_body": False}],
    )
    assert sent[0]["status"] == 400
    again = await client.post(
        "/v1/usage/events", json=event("odd-length-1", WHEN), headers=shop.headers
    )
    assert again.status_code == 201, again.text


async def test_an_unexpected_failure_is_a_500_problem_that_names_the_request(
    client: AsyncClient, shop: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(single, "record", broken)
    logged = io.StringIO()
    billing_logging.configure(log_format="json", force=True, stream=logged)
    try:
        response = await client.post(
            "/v1/usage/events", json=event("boom-1", WHEN), headers=shop.headers
        )
        billing_logging.flush()  # tracebacks are written by the log thread
    finally:
        billing_logging.configure(log_format="console", force=True)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    assert "database went away" not in response.text  # the cause is logged, not shown
    lines = [json.loads(line) for line in logged.getvalue().splitlines() if line.startswith("{")]
    failure = next(line for line in lines if line["event"] == "unhandled_error")
    assert failure["request_id"] == request_id
    assert failure["merchant_id"] == str(shop.merchant_id)
    assert "the database went away" in failure["exception"]
