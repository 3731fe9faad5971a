"""Which subscription period a usage event belongs to: the period containing its ``occurred_at``.

A merchant's subscriptions and periods change a few times a month while usage arrives thousands
of times a second, so each process keeps them for a couple of seconds. Money never rests on that
copy: ingest re-checks in its one SQL statement that the merchant's subscriptions are unchanged
(their count and summed ``lock_version``, which every change bumps) and reloads when they are
not; a refusal made from a copy is re-checked against a fresh one before it is answered.
Merchants on a test clock are never cached (their time moves when the clock does).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from plans.periods import calendar_period_containing, period_containing
from service.clock import SYSTEM_CLOCK, Clock
from service.db.engine import current as current_database
from service.subscriptions import clocks

CACHE_SECONDS: Final = 2.0
_MAX_ENTRIES: Final = 100_000
_MAX_PERIODS_AHEAD: Final = 240

_SUBSCRIPTIONS = """
SELECT id, status, currency, timezone, billing_period, billing_anchor, current_period_start,
       current_period_end, cancel_at_period_end, lock_version
FROM subscriptions WHERE merchant_id = $1
"""

_PERIODS = """
SELECT p.subscription_id, p.period_start, p.period_end, s.currency
FROM subscription_periods p
JOIN subscriptions s ON s.merchant_id = p.merchant_id AND s.id = p.subscription_id
WHERE p.merchant_id = $1
ORDER BY p.period_start
"""


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """``[start, end)`` of one subscription period, in UTC."""

    subscription_id: UUID
    start: datetime
    end: datetime
    currency: str


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LiveSubscription:
    id: UUID
    currency: str
    timezone: str
    billing_period: str
    billing_anchor: datetime
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool


@dataclass(slots=True)
class MerchantPeriods:
    """A merchant's subscription periods as of ``loaded_at``, and how to place an instant."""

    merchant_id: UUID
    periods: tuple[BillingPeriod, ...]
    """Every period of every subscription of the merchant, by start (they never overlap)."""
    live: LiveSubscription | None
    timezone: str
    currency: str | None
    subscription_count: int
    lock_version_sum: int
    clock: Clock
    loaded_at: float
    _starts: list[datetime] = field(default_factory=list)
    _ahead: list[BillingPeriod] = field(default_factory=list)
    """Periods after the open one that the worker has not opened yet, computed on demand."""

    _open: BillingPeriod | None = None

    def __post_init__(self) -> None:
        self._starts = [period.start for period in self.periods]
        live = self.live
        if live is not None:
            self._open = BillingPeriod(
                live.id, live.current_period_start, live.current_period_end, live.currency
            )

    @property
    def is_cacheable(self) -> bool:
        return self.clock is SYSTEM_CLOCK

    def now(self) -> datetime:
        return self.clock.now()

    def place(self, at: datetime) -> BillingPeriod | Refusal:
        """The period containing ``at`` (fastest in UTC), or why there is none."""
        open_period = self._open
        if open_period is not None and open_period.start <= at < open_period.end:
            return open_period  # nearly every event: the hot path is two comparisons
        live = self.live
        if live is not None and at >= live.current_period_end:
            if live.cancel_at_period_end:
                return Refusal(
                    "after_subscription_end",
                    "occurred_at is after the subscription ends "
                    f"({live.current_period_end.isoformat()})",
                )
            return self._ahead_containing(at, live)
        index = bisect.bisect_right(self._starts, at) - 1
        if index >= 0 and at < self.periods[index].end:
            return self.periods[index]
        if not self.periods:
            return Refusal("no_subscription", "the merchant has no subscription to bill usage to")
        first = self.periods[0].start
        if at < first:
            return Refusal(
                "before_subscription_start",
                f"occurred_at is before the subscription started ({first.isoformat()})",
            )
        if index == len(self.periods) - 1:
            return Refusal(
                "after_subscription_end",
                f"occurred_at is after the subscription ended ({self.periods[-1].end.isoformat()})",
            )
        return Refusal(
            "outside_subscription", "no subscription of the merchant was running at occurred_at"
        )

    def _ahead_containing(self, at: datetime, live: LiveSubscription) -> BillingPeriod | Refusal:
        """Periods follow each other without gaps: the next one starts where the open one ends
        and runs to the end of the plan's period containing that start (as period roll does)."""
        for period in self._ahead:
            if period.start <= at < period.end:
                return period
        start = self._ahead[-1].end if self._ahead else live.current_period_end
        while len(self._ahead) < _MAX_PERIODS_AHEAD:
            whole = period_containing(
                live.billing_period,  # type: ignore[arg-type]
                start,
                live.timezone,
                live.billing_anchor,
            )
            period = BillingPeriod(live.id, start, whole.end.astimezone(UTC), live.currency)
            self._ahead.append(period)
            if at < period.end:
                return period
            start = period.end
        return Refusal("outside_subscription", "occurred_at is too far ahead of the open period")

    def periods_until(self, now: datetime) -> list[BillingPeriod]:
        """Every period that has started by ``now``, including those not yet opened."""
        self.place(now)  # computes the periods ahead of the open one, up to now
        return [period for period in (*self.periods, *self._ahead) if period.start <= now]

    def periods_starting_in(self, year: int, month: int, now: datetime) -> list[BillingPeriod]:
        """Periods that start in a calendar month of the merchant's billing timezone."""
        from plans.periods import zone

        month_start = datetime(year, month, 1, 12, tzinfo=zone(self.timezone))
        window = calendar_period_containing(month_start, self.timezone)
        return [
            period
            for period in self.periods_until(now)
            if window.start <= period.start < window.end
        ]


class _Cache:
    def __init__(self) -> None:
        self.entries: dict[UUID, MerchantPeriods] = {}
        self.loading: dict[UUID, asyncio.Task[MerchantPeriods]] = {}

    def clear(self) -> None:
        self.entries.clear()
        self.loading.clear()

    def keep(self, entry: MerchantPeriods) -> MerchantPeriods:
        if not entry.is_cacheable:
            self.entries.pop(entry.merchant_id, None)
            return entry
        kept = self.entries.get(entry.merchant_id)
        if kept is not None and kept.loaded_at > entry.loaded_at:
            return entry  # a newer load finished first: keep the newer copy
        if len(self.entries) >= _MAX_ENTRIES:
            self.entries.clear()
        self.entries[entry.merchant_id] = entry
        return entry


_cache = _Cache()


def clear_cache() -> None:
    _cache.clear()


async def for_merchant(merchant_id: UUID, *, fresh: bool = False) -> MerchantPeriods:
    """The merchant's periods: from this process's copy if it is recent, else loaded.

    ``fresh`` loads them now (after a re-check found the copy stale, or to confirm a refusal).
    Concurrent misses for one merchant share one load, which runs as its own task so that a
    request going away does not take the others' answer with it.
    """
    if fresh:
        return _cache.keep(await _load(merchant_id))
    entry = _cache.entries.get(merchant_id)
    if entry is not None and time.monotonic() - entry.loaded_at < CACHE_SECONDS:
        return entry
    task = _cache.loading.get(merchant_id)
    if task is None:
        task = asyncio.ensure_future(_load(merchant_id))
        _cache.loading[merchant_id] = task

        def done(finished: asyncio.Task[MerchantPeriods]) -> None:
            if _cache.loading.get(merchant_id) is finished:
                del _cache.loading[merchant_id]
            if not finished.cancelled() and finished.exception() is None:
                _cache.keep(finished.result())

        task.add_done_callback(done)
    return await asyncio.shield(task)


async def _load(merchant_id: UUID) -> MerchantPeriods:
    loaded_at = time.monotonic()  # before reading: the copy is at least this fresh
    clock = await clocks.clock_for_merchant(merchant_id)
    # One snapshot, so the periods match the subscriptions' versions ingest checks against.
    async with (
        current_database().pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        subscriptions = await connection.fetch(_SUBSCRIPTIONS, merchant_id)
        rows = await connection.fetch(_PERIODS, merchant_id)
    live_row = next((row for row in subscriptions if row["status"] != "canceled"), None)
    live = (
        LiveSubscription(
            id=live_row["id"],
            currency=live_row["currency"],
            timezone=live_row["timezone"],
            billing_period=live_row["billing_period"],
            billing_anchor=live_row["billing_anchor"],
            current_period_start=live_row["current_period_start"],
            current_period_end=live_row["current_period_end"],
            cancel_at_period_end=live_row["cancel_at_period_end"],
        )
        if live_row is not None
        else None
    )
    periods = tuple(
        BillingPeriod(
            row["subscription_id"], row["period_start"], row["period_end"], row["currency"]
        )
        for row in rows
    )
    latest = max(subscriptions, key=lambda row: row["current_period_start"], default=None)
    return MerchantPeriods(
        merchant_id=merchant_id,
        periods=periods,
        live=live,
        timezone=live.timezone if live else (latest["timezone"] if latest else "Asia/Shanghai"),
        currency=live.currency if live else (latest["currency"] if latest else None),
        subscription_count=len(subscriptions),
        lock_version_sum=sum(row["lock_version"] for row in subscriptions),
        clock=clock,
        loaded_at=loaded_at,
    )
