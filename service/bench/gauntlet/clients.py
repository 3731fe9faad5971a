"""The gauntlet's order pipelines: clients that report usage the way the README tells clients to.

Each client makes up its events once (a stable ``transaction_id`` each, the content fixed), sends
them singly or in batches to any API server, and retries the same request on anything that is
not a definite answer: a connection refused or cut, a timeout, a 429 or a 503 (waiting
``Retry-After``), any other 5xx. A definite answer is a 201 or 200 for one event, a 200 with a
result per event for a batch. What it learns goes into the `Tally` the audit reads: every id it
ever sent, and every id an answer acknowledged.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

REQUEST_TIMEOUT_SECONDS = 10.0
"""A client gives up waiting for an answer after this and sends the request again."""


@dataclass(frozen=True)
class Merchant:
    id: str
    key: str
    tier: str
    prefix: str
    """Starts each of its transaction ids (ids are per merchant; this keeps logs readable)."""


@dataclass
class Tally:
    """What the clients sent and what was acknowledged, per merchant id."""

    sent: dict[str, set[str]] = field(default_factory=dict)
    acknowledged: dict[str, set[str]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    """Definite answers by kind: ``single``, ``batch``."""
    retries: Counter[str] = field(default_factory=Counter)
    """Requests sent again, by why: ``connect``, ``timeout``, ``cut``, ``429``, ``503``, ..."""
    refused: list[str] = field(default_factory=list)
    """Definite answers that refused an event the client meant to be counted (a discrepancy)."""

    def events_acknowledged(self) -> int:
        return sum(len(ids) for ids in self.acknowledged.values())


@dataclass
class Endpoints:
    """The API servers' addresses; a client that fails on one moves to the next."""

    urls: list[str]

    def pick(self, turn: int) -> str:
        return self.urls[turn % len(self.urls)]


class Client:
    """One merchant's order pipeline (see the module's docstring)."""

    def __init__(
        self,
        merchant: Merchant,
        endpoints: Endpoints,
        tally: Tally,
        *,
        clock: Callable[[], datetime],
        seed: int,
        pause_seconds: float,
        max_batch: int,
    ) -> None:
        self.merchant = merchant
        self.endpoints = endpoints
        self.tally = tally
        self.clock = clock
        self.rng = random.Random(seed)  # noqa: S311 - a workload, not a secret
        self.pause_seconds = pause_seconds
        self.max_batch = max_batch
        self.turn = self.rng.randrange(len(endpoints.urls))
        self.next_number = 0
        tally.sent.setdefault(merchant.id, set())
        tally.acknowledged.setdefault(merchant.id, set())

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; the request in hand is always taken to a definite answer."""
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS,
            trust_env=False,
            headers={"Authorization": f"Bearer {self.merchant.key}"},
        ) as http:
            while not stop.is_set():
                if self.rng.random() < 0.5:
                    await self._single(http)
                else:
                    await self._batch(http, self.rng.randint(2, self.max_batch))
                await asyncio.sleep(self.pause_seconds * (0.5 + self.rng.random()))

    def _event(self) -> dict[str, Any]:
        self.next_number += 1
        transaction_id = f"{self.merchant.prefix}-{self.next_number:08d}"
        self.tally.sent[self.merchant.id].add(transaction_id)
        return {
            "transaction_id": transaction_id,
            "metric": "orders",
            "occurred_at": self.clock().isoformat(),
            "quantity": 1,
            "gmv": {"amount_minor": self.rng.randint(500, 50_000), "currency": "CNY"},
        }

    async def _single(self, http: httpx.AsyncClient) -> None:
        event = self._event()
        status, body = await self._until_definite(http, "/v1/usage/events", event)
        if status in (200, 201):
            self.tally.acknowledged[self.merchant.id].add(event["transaction_id"])
        else:
            self.tally.refused.append(f"{event['transaction_id']}: {status} {body}")
        self.tally.requests["single"] += 1

    async def _batch(self, http: httpx.AsyncClient, size: int) -> None:
        events = [self._event() for _ in range(size)]
        status, body = await self._until_definite(
            http, "/v1/usage/events/batch", {"events": events}
        )
        if status != 200 or not isinstance(body, dict):
            self.tally.refused.append(f"batch of {size}: {status} {body}")
            return
        for result in body.get("results", []):
            if result.get("status") in ("accepted", "duplicate"):
                self.tally.acknowledged[self.merchant.id].add(result["transaction_id"])
            else:
                self.tally.refused.append(f"{result.get('transaction_id')}: {result}")
        self.tally.requests["batch"] += 1

    async def _until_definite(
        self, http: httpx.AsyncClient, path: str, payload: Any
    ) -> tuple[int, Any]:
        """POST ``payload`` until an answer that is not "try again"; (status, decoded body)."""
        attempt = 0
        while True:
            url = self.endpoints.pick(self.turn) + path
            try:
                answer = await http.post(url, json=payload)
            except httpx.ConnectError:
                why, wait = "connect", 0.2
            except httpx.TimeoutException:
                why, wait = "timeout", 0.2
            except httpx.HTTPError:  # the server died mid-answer (SIGKILL): the answer is lost
                why, wait = "cut", 0.2
            else:
                status = answer.status_code
                if status not in (429, 500, 502, 503, 504):
                    return status, _decoded(answer)
                why = str(status)
                wait = retry_after(answer)
            attempt += 1
            self.tally.retries[why] += 1
            if why in ("connect", "cut", "timeout", "500", "502", "504"):
                self.turn += 1  # that server is gone or failing: try another
            # Never sooner than Retry-After; a little later each time, with jitter so that
            # clients do not come back in step.
            growth = 1 + min(attempt, 5) / 5
            await asyncio.sleep(max(wait, min(wait * growth, 5.0)) * self.rng.uniform(1.0, 1.3))


def retry_after(answer: httpx.Response) -> float:
    """The seconds an answer asks to wait (``Retry-After``; 1 s when it says none or
    nothing readable)."""
    try:
        return max(float(answer.headers.get("retry-after", "1")), 0.1)
    except ValueError:
        return 1.0


def _decoded(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return answer.text[:300]
