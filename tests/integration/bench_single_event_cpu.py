"""Benchmark, not a test (prints figures, asserts only that each event was accepted): the
server CPU of one ``POST /v1/usage/events``, in-process, and what each part of it takes.

The app is driven directly as ASGI (no HTTP server) by 64 concurrent clients on the suite's
embedded PostgreSQL, with JSON log lines (to /dev/null) and the rate limit on. The figure is
`time.process_time` of this process per event: the asyncpg client is in it, PostgreSQL is
not. Each part's share is the difference made by removing only that part.

Run: .venv/bin/pytest -q -s tests/integration/bench_single_event_cpu.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from typing import Any
from uuid import UUID

import pytest
import structlog
from httpx import AsyncClient

from service.app import create_app
from service.observability import logging as billing_logging
from service.observability import requests as request_observation
from service.settings import Settings
from service.usage import single
from service.usage.schemas import EventOut, UsageEventIn
from tests.integration.conftest import Tenant, post_scope
from tests.integration.usage_helpers import advance, at, merchant_on_clock

EVENTS = 4_000
CLIENTS = 64
RUNS = 4
WHEN = at("2026-10-15T08:00:00")


async def _send_events(app: Any, key: str, prefix: str, count: int) -> None:
    headers = [(b"content-type", b"application/json")]

    async def one(number: int) -> None:
        body = json.dumps(
            {
                "transaction_id": f"{prefix}-{number}",
                "metric": "orders",
                "occurred_at": WHEN,
                "quantity": 1,
            }
        ).encode()
        scope = post_scope(
            "/v1/usage/events", key, [*headers, (b"content-length", str(len(body)).encode())]
        )
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect while the answer is sent
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        assert statuses == [201], statuses

    numbers = iter(range(count))

    async def client() -> None:
        for number in numbers:
            await one(number)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def _cpu_per_event(settings: Settings, key: str, label: str) -> list[float]:
    app = create_app(settings)
    await _send_events(app, key, f"{label}-warm", 500)
    figures = []
    for run in range(RUNS):
        started = time.process_time()
        await _send_events(app, key, f"{label}-{run}", EVENTS)
        figures.append((time.process_time() - started) / EVENTS * 1e6)
    return figures


class _Silent:
    def info(self, *_: Any, **__: Any) -> None:
        pass


async def _answer_without_recording(
    merchant_id: UUID, event: UsageEventIn, *, future_skew_seconds: int
) -> EventOut:
    return EventOut(transaction_id=event.transaction_id, status="accepted")


async def test_print_the_cpu_of_one_single_event_and_its_parts(
    client: AsyncClient, operator: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, "2026-10-20T12:00:00")
    unlimited = dataclasses.replace(settings.rate_limits, basic=10**9, advanced=10**9, custom=10**9)
    measured = dataclasses.replace(settings, log_format="json", rate_limits=unlimited)
    # JSON lines as in production (a cached logger), written to /dev/null.
    monkeypatch.setattr(billing_logging, "_configured", False)
    billing_logging.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    monkeypatch.setattr(request_observation, "log", structlog.get_logger("service.request"))
    lines = [f"CPU per single event, in-process, {CLIENTS} clients, {EVENTS} events a run:"]

    def note(what: str, figures: list[float]) -> None:
        lines.append(f"  {what:<44} " + ", ".join(f"{figure:.1f}" for figure in figures) + " µs")

    note("the whole request", await _cpu_per_event(measured, tenant.key, "all"))
    monkeypatch.setattr(single, "record", _answer_without_recording)
    note("without the event's own work", await _cpu_per_event(measured, tenant.key, "noevent"))
    monkeypatch.setattr(request_observation, "log", _Silent())
    note(
        "... and without the request log line", await _cpu_per_event(measured, tenant.key, "nolog")
    )
    no_limits = dataclasses.replace(
        measured, rate_limits=dataclasses.replace(unlimited, basic=0, advanced=0, custom=0)
    )
    note("... and without the rate limit", await _cpu_per_event(no_limits, tenant.key, "nolimit"))
    billing_logging.configure(log_format=settings.log_format, force=True)
    print("\n" + "\n".join(lines))
