"""Signed webhook delivery, with the misbehaviour real Stripe shows: duplicates, delays, disorder.

Events are queued by the store and posted by one background thread, so the API never waits on
the receiver. Each POST carries ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">``
with the endpoint secret. A receiver that is down gets a few retries; then the event is kept as
undelivered and can be re-sent. ``hold``/``release`` park events and send them later in a chosen
order (fifo, reverse, shuffled, or an explicit list of ids), any number of copies each.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

ReleaseOrder = Literal["fifo", "reverse", "shuffle"] | Sequence[str]


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class _Outgoing:
    event_id: str
    event_type: str
    payload: bytes


@dataclass(frozen=True)
class Delivery:
    """One POST attempt of one event copy."""

    event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    sent_at: float

    @property
    def is_success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Background delivery of events to one endpoint URL."""

    def __init__(
        self,
        url: str | None,
        secret: str,
        *,
        max_attempts: int = 3,
        retry_backoff_seconds: float = 0.05,
        request_timeout_seconds: float = 5.0,
        on_delivered: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self._timeout = request_timeout_seconds
        self._on_delivered = on_delivered
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Outgoing]] = []
        self._seq = itertools.count()
        self._held: list[_Outgoing] | None = None
        self._batch: list[_Outgoing] = []
        self._batch_started = 0.0
        self._in_flight = 0
        self._known: dict[str, _Outgoing] = {}
        self._deliveries: list[Delivery] = []
        self._undelivered: dict[str, _Outgoing] = {}
        self._duplicates = 1
        self._delay_seconds = 0.0
        self._shuffle_window = 0
        self._shuffle_max_wait = 0.2
        self._random = random.Random()  # noqa: S311 - test chaos, not security
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="standin-webhooks", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # -- modes --------------------------------------------------------------------------------

    def configure(
        self,
        *,
        duplicates: int = 1,
        delay_seconds: float = 0.0,
        shuffle_window: int = 0,
        shuffle_max_wait_seconds: float = 0.2,
        seed: int | None = None,
    ) -> None:
        """Live delivery modes (all off by default).

        ``duplicates``: send each event that many times. ``delay_seconds``: send each event that
        long after it happened. ``shuffle_window``: collect up to that many events (or for up to
        ``shuffle_max_wait_seconds``) and send them in random order. ``seed`` makes shuffles
        repeatable.
        """
        if duplicates < 1 or delay_seconds < 0 or shuffle_window < 0:
            raise ValueError("duplicates >= 1, delay_seconds >= 0, shuffle_window >= 0")
        with self._cond:
            self._duplicates = duplicates
            self._delay_seconds = delay_seconds
            self._shuffle_window = shuffle_window
            self._shuffle_max_wait = shuffle_max_wait_seconds
            if seed is not None:
                self._random.seed(seed)
            self._cond.notify_all()

    def hold(self) -> None:
        """Park every new event until ``release``."""
        with self._cond:
            if self._held is None:
                self._held = []

    def held(self) -> list[str]:
        with self._cond:
            return [item.event_id for item in self._held or []]

    def release(
        self,
        order: ReleaseOrder = "fifo",
        *,
        copies: int = 1,
        seed: int | None = None,
        keep_holding: bool = False,
    ) -> int:
        """Send the parked events: ``copies`` of each, in ``order``; returns how many POSTs.

        With an explicit list of event ids, exactly those are sent in that order (an id may
        repeat) and the others stay parked.
        """
        with self._cond:
            held = self._held or []
            if isinstance(order, str):
                batch = [item for item in held for _ in range(copies)]
                if order == "reverse":
                    batch.reverse()
                elif order == "shuffle":
                    rng = random.Random(seed) if seed is not None else self._random  # noqa: S311
                    rng.shuffle(batch)
                elif order != "fifo":
                    raise ValueError(f"unknown release order {order!r}")
                remaining: list[_Outgoing] = []
            else:
                by_id = {item.event_id: item for item in held}
                missing = [event_id for event_id in order if event_id not in by_id]
                if missing:
                    raise KeyError(f"not held: {missing}")
                batch = [by_id[event_id] for event_id in order for _ in range(copies)]
                remaining = [item for item in held if item.event_id not in set(order)]
            self._held = remaining if (keep_holding or remaining) else None
            now = time.monotonic()
            for item in batch:
                self._push(item, now)
            return len(batch)

    def flush(self) -> None:
        """Send a partly filled shuffle window now."""
        with self._cond:
            self._flush_batch()

    # -- intake -------------------------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue one event (called by the store, under its lock: never blocks on I/O)."""
        item = _Outgoing(event["id"], event["type"], json.dumps(event, indent=2).encode())
        with self._cond:
            self._known[item.event_id] = item
            if self.url is None:
                self._undelivered[item.event_id] = item
                return
            if self._held is not None:
                self._held.append(item)
                return
            copies = [item] * self._duplicates
            if self._shuffle_window:
                if not self._batch:
                    self._batch_started = time.monotonic()
                self._batch.extend(copies)
                if len(self._batch) >= self._shuffle_window:
                    self._flush_batch()
                self._cond.notify_all()
                return
            due = time.monotonic() + self._delay_seconds
            for copy in copies:
                self._push(copy, due)

    def resend(self, event_id: str, *, copies: int = 1) -> None:
        """Send an event again (undelivered or not), like "Resend" in the dashboard."""
        with self._cond:
            item = self._known.get(event_id)
            if item is None:
                raise KeyError(f"unknown event {event_id}")
            for _ in range(copies):
                self._push(item, time.monotonic())

    def resend_undelivered(self) -> int:
        with self._cond:
            items = list(self._undelivered.values())
            self._undelivered.clear()
            for item in items:
                self._push(item, time.monotonic())
            return len(items)

    # -- observation --------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def undelivered(self) -> list[str]:
        with self._cond:
            return list(self._undelivered)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued, batched or in flight (held events do not count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._batch or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- worker -------------------------------------------------------------------------------

    def _push(self, item: _Outgoing, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), item))
        self._cond.notify_all()

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._random.shuffle(batch)
        now = time.monotonic() + self._delay_seconds
        for item in batch:
            self._push(item, now)

    def _next_item(self) -> _Outgoing | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._batch and now - self._batch_started >= self._shuffle_max_wait:
                    self._flush_batch()
                waits = []
                if self._heap:
                    due, _, item = self._heap[0]
                    if due <= now:
                        heapq.heappop(self._heap)
                        self._in_flight += 1
                        return item
                    waits.append(due - now)
                if self._batch:
                    waits.append(self._batch_started + self._shuffle_max_wait - now)
                self._cond.wait(min(waits) if waits else None)
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, trust_env=False) as client:
            while (item := self._next_item()) is not None:
                try:
                    self._deliver(client, item)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _deliver(self, client: httpx.Client, item: _Outgoing) -> None:
        for attempt in range(1, self.max_attempts + 1):
            status_code: int | None = None
            error: str | None = None
            url = self.url
            if url is None:
                error = "no webhook url"
            else:
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(item.payload, self.secret, int(time.time())),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                }
                try:
                    response = client.post(url, content=item.payload, headers=headers)
                    status_code = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            delivery = Delivery(
                item.event_id, item.event_type, attempt, status_code, error, time.time()
            )
            with self._cond:
                self._deliveries.append(delivery)
                if self._stopping:
                    return
            if delivery.is_success:
                if self._on_delivered is not None:
                    self._on_delivered(item.event_id)
                return
            time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
        with self._cond:
            self._undelivered[item.event_id] = item
