"""``billing worker``: the long-running process that closes periods, sends the Stripe outbox,
processes webhooks, tells the platform's webhook endpoints what happened and removes what
retention says has expired. Any number can run side by side: every unit of work is claimed in
its own short transaction (Stripe outbox rows and outgoing deliveries with a lease, see
``webhooks.outbox`` and ``service.outgoing.delivery``). SIGTERM or SIGINT lets the unit in hand
finish (the period being closed, the Stripe request being made), then the worker exits.

While PostgreSQL is unreachable a pass fails at once (the pool's timeouts bound it); the worker
then waits its interval, doubled after each failed pass up to
``BILLING_WORKER_BACKOFF_MAX_SECONDS``, and says so once per outage. Its pool reconnects by
itself when the server is back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from datetime import timedelta

import structlog

from service import retention
from service.clock import SYSTEM_CLOCK, Clock
from service.db.engine import is_unavailable as is_database_unavailable
from service.invoicing import close
from service.outgoing.runner import OutgoingRunner, OutgoingSummary
from service.payments import links as payment_links
from service.settings import Settings
from webhooks.sync import StripeSync, SyncSummary

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one worker pass did: the period close and the Stripe sync."""

    close: close.CloseSummary
    sync: SyncSummary
    is_stripe_configured: bool
    outgoing: OutgoingSummary | None = None

    def lines(self) -> list[str]:
        """The pass in words, for ``billing worker --once``."""
        made = self.close
        said = [
            f"period close: {made.invoices_made} invoice(s) made, "
            f"{made.subscriptions_rolled} subscription(s) brought up to date"
        ]
        said += [f"  skipped {count}: {reason}" for reason, count in sorted(made.skipped.items())]
        sync = self.sync
        said.append(
            f"Stripe webhooks: {sync.inbox.processed} processed, {sync.inbox.retrying} to retry,"
            f" {sync.inbox.parked} parked"
        )
        if self.is_stripe_configured:
            said.append(
                f"Stripe outbox: {sync.outbox.sent} sent, {sync.outbox.retrying} to retry,"
                f" {sync.outbox.parked} parked; payment retries queued: {sync.retries_queued}"
            )
        else:
            said.append("Stripe outbox: no STRIPE_API_KEY, so nothing was sent (rows wait)")
        if self.outgoing is not None:
            sent = self.outgoing.deliveries
            said.append(
                f"outgoing webhooks: {self.outgoing.events_found} event(s) found by the watch,"
                f" {sent.delivered} delivered, {sent.retrying} to retry, {sent.given_up} given up,"
                f" {sent.endpoints_disabled} endpoint(s) disabled"
            )
        return said


@dataclass
class Backoff:
    """The wait after each pass: the interval while passes work; doubled after each pass that
    found the database unreachable, up to ``ceiling``."""

    interval_seconds: float
    ceiling_seconds: float
    failures: int = 0

    def failed(self) -> float:
        self.failures += 1
        wait = self.interval_seconds * 2 ** (self.failures - 1)
        return min(wait, max(self.ceiling_seconds, self.interval_seconds))

    def reset(self) -> None:
        self.failures = 0


class Worker:
    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.stopping = asyncio.Event()
        self.stripe_sync = StripeSync(settings.stripe)
        self.outgoing = OutgoingRunner(settings)
        payment_links.configure(settings.payments)  # links the Stripe sync makes for events

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker_stopping")
        self.stopping.set()

    async def run_once(self) -> PassReport:
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
        await retention.run_pass(self.settings.retention, now=self.clock.now())
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
        # A pass of its own: a slow or dead endpoint holds back no Stripe push (nor the close).
        outgoing = await self.outgoing.run_pass(
            now=self.clock.now(), should_stop=self.stopping.is_set
        )
        if not outgoing.is_idle:
            sent = outgoing.deliveries
            log.info(
                "outgoing_webhooks_pass",
                found=outgoing.events_found,
                delivered=sent.delivered,
                retrying=sent.retrying,
                given_up=sent.given_up,
                endpoints_disabled=sent.endpoints_disabled,
            )
        return PassReport(
            close=summary,
            sync=sync,
            is_stripe_configured=self.settings.stripe.is_configured,
            outgoing=outgoing,
        )

    async def run(self, *, interval_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        log.info("worker_started", interval_seconds=interval_seconds)
        backoff = Backoff(interval_seconds, self.settings.capacity.worker_backoff_max_seconds)
        while not self.stopping.is_set():
            try:
                await self.run_once()
            except Exception as error:  # one bad pass must not kill the worker: logged, retried
                if is_database_unavailable(error):
                    wait = backoff.failed()
                    if backoff.failures == 1:
                        log.warning("worker_database_unavailable", error_type=type(error).__name__)
                    log.info("worker_backing_off", retry_in_seconds=wait, failures=backoff.failures)
                else:
                    log.exception("worker_pass_failed")
                    wait = interval_seconds
            else:
                if backoff.failures:
                    log.info("worker_database_back", failed_passes=backoff.failures)
                backoff.reset()
                wait = interval_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)
        await self.close()
        log.info("worker_stopped")

    async def close(self) -> None:
        """Let go of what the passes keep open (outgoing webhook connections)."""
        await self.outgoing.aclose()
