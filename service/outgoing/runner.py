"""The worker's outgoing-webhooks pass: look at trials and usage (every
``BILLING_USAGE_WATCH_SECONDS``), then send what is due. One per worker process: it keeps the
HTTP connections and what the last usage look saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from service.outgoing import delivery, watch
from service.outgoing.transport import Sender
from service.settings import Settings


@dataclass
class OutgoingSummary:
    watch: watch.WatchSummary | None = None
    """None when it was not time to look."""
    deliveries: delivery.DeliverySummary = field(default_factory=delivery.DeliverySummary)

    @property
    def events_found(self) -> int:
        if self.watch is None:
            return 0
        return self.watch.trials_ending + self.watch.thresholds + self.watch.cheaper_plans

    @property
    def is_idle(self) -> bool:
        return not self.events_found and self.deliveries.is_idle


class OutgoingRunner:
    def __init__(self, settings: Settings, *, sender: Sender | None = None) -> None:
        self.settings = settings
        outgoing = settings.outgoing
        self.sender = sender or Sender(
            timeout_seconds=outgoing.timeout_seconds,
            requires_https=outgoing.requires_https,
            allows_private=outgoing.allows_private_addresses,
        )
        self.seen: watch.Seen = {}
        self._last_look: float | None = None

    async def run_pass(
        self, *, now: datetime, should_stop: Callable[[], bool] | None = None
    ) -> OutgoingSummary:
        summary = OutgoingSummary()
        started = time.monotonic()
        interval = self.settings.outgoing.usage_watch_seconds
        if self._last_look is None or started - self._last_look >= interval:
            self._last_look = started
            summary.watch = await watch.run(
                now=now, tax_rate=self.settings.tax_rate, seen=self.seen
            )
        summary.deliveries = await delivery.deliver_pass(
            self.sender, self.settings.outgoing, now=now, should_stop=should_stop
        )
        return summary

    async def aclose(self) -> None:
        await self.sender.aclose()
