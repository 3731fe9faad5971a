"""``billing worker``: the long-running process that closes periods (and, as they land, sends
the Stripe outbox and processes webhooks). Any number can run side by side: every unit of work
is claimed with ``FOR UPDATE SKIP LOCKED`` in its own transaction. SIGTERM or SIGINT lets the
unit in hand finish, then the worker exits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta

import structlog

from service.clock import SYSTEM_CLOCK, Clock
from service.invoicing import close
from service.settings import Settings
from webhooks.sync import StripeSync

log = structlog.get_logger(__name__)


class Worker:
    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.stopping = asyncio.Event()
        self.stripe_sync = StripeSync(settings.stripe)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker_stopping")
        self.stopping.set()

    async def run_once(self) -> close.CloseSummary:
        summary = await close.run_pass(
            system_now=self.clock.now(),
            grace=timedelta(hours=self.settings.usage_grace_hours),
            tax_rate=self.settings.tax_rate,
            should_stop=self.stopping.is_set,
        )
        if summary.invoices_made or summary.subscriptions_rolled:
            log.info(
                "close_pass",
                invoices=summary.invoices_made,
                rolled=summary.subscriptions_rolled,
                totals=summary.total_minor_by_currency,
                skipped=summary.skipped,
            )
        sync = await self.stripe_sync.run_pass(
            now=self.clock.now(), should_stop=self.stopping.is_set
        )
        if not sync.is_idle:
            log.info(
                "stripe_sync_pass",
                pushed=sync.outbox.sent,
                push_retrying=sync.outbox.retrying,
                push_parked=sync.outbox.parked,
                events=sync.inbox.processed,
                event_retrying=sync.inbox.retrying,
                event_parked=sync.inbox.parked,
                payment_retries_queued=sync.retries_queued,
            )
        return summary

    async def run(self, *, interval_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        log.info("worker_started", interval_seconds=interval_seconds)
        while not self.stopping.is_set():
            try:
                await self.run_once()
            except Exception:  # one bad pass must not kill the worker; it is logged and retried
                log.exception("worker_pass_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval_seconds)
        log.info("worker_stopped")
