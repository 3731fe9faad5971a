"""One Stripe sync pass for the worker: process the inbox, queue due payment retries, move
overdue sent invoices along, send the outbox (when a Stripe key is configured; otherwise rows
wait)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from service.settings import StripeSettings
from webhooks import dunning, inbox, outbox
from webhooks.gateway import Gateway


@dataclass
class SyncSummary:
    retries_queued: int = 0
    overdue_marked: int = 0
    outbox: outbox.SendSummary = field(default_factory=outbox.SendSummary)
    inbox: inbox.ProcessSummary = field(default_factory=inbox.ProcessSummary)

    @property
    def is_idle(self) -> bool:
        return not (
            self.retries_queued
            or self.overdue_marked
            or self.outbox.sent
            or self.outbox.retrying
            or self.outbox.parked
            or self.inbox.processed
            or self.inbox.retrying
            or self.inbox.parked
        )


class StripeSync:
    def __init__(self, settings: StripeSettings, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        if gateway is None and settings.is_configured:
            self.gateway = Gateway.from_settings(settings)

    async def run_pass(
        self,
        *,
        now: datetime,
        merchant_ids: Sequence[UUID] | None = None,
        include_catalog: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> SyncSummary:
        summary = SyncSummary()
        summary.inbox = await inbox.process_pass(now=now, should_stop=should_stop)
        summary.retries_queued = await dunning.queue_due_retries(now=now)
        summary.overdue_marked = await dunning.mark_overdue(now=now)
        if self.gateway is not None:
            summary.outbox = await outbox.send_pass(
                self.gateway,
                now=now,
                merchant_ids=merchant_ids,
                include_catalog=include_catalog,
                should_stop=should_stop,
                lease=timedelta(seconds=self.settings.outbox_lease_seconds),
            )
        return summary
