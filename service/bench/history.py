"""``billing bench usage --history N``: a merchant's past, written fast.

``--history-months`` ended monthly periods before the open one, holding N events between them,
written as ingest would have left them but by COPY: the raw events, their exactly-once ledger
rows with the content hashes ingest makes (``service.usage.ingest.content_hash``), and the
per-period totals those events sum to. A history the temp dir's disk cannot hold with 10 GB to
spare is refused before anything starts."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

BYTES_PER_HISTORY_EVENT: Final = 400
"""Disk a preloaded event needs while loading: its row and time-index entry, its ledger row
and primary-key entry (0.28-0.30 KB measured at 1M-31M events) and the WAL written meanwhile."""


DISK_FLOOR_BYTES: Final = 10 * 1000**3
"""A history is refused when it would leave less free than this."""


def history_disk_refusal(events: int, *, free: int) -> str | None:
    """Why a history of ``events`` does not fit the disk (``free`` bytes) of the
    temporary directory, where the embedded PostgreSQL keeps its data; None when it fits."""
    needed = events * BYTES_PER_HISTORY_EVENT
    keep = DISK_FLOOR_BYTES
    if free - needed >= keep:
        return None
    return (
        f"--history {events:,} needs about {needed / 1000**3:,.1f} GB of disk "
        f"({BYTES_PER_HISTORY_EVENT} bytes an event, WAL included) and {free / 1000**3:,.1f} GB"
        f" are free in {tempfile.gettempdir()}: it would leave less than "
        f"{keep / 1000**3:,.1f} GB free. Load"
        f" at most {max(free - keep, 0) // BYTES_PER_HISTORY_EVENT:,} events, or set TMPDIR to"
        " a larger disk"
    )


# Ended monthly periods before the open one, as the period roll leaves them (same plan terms).
_HISTORY_PERIODS = """
INSERT INTO subscription_periods (merchant_id, subscription_id, period_start, period_end,
                                  plan_code, plan_version, addons, fee_plan_code,
                                  fee_plan_version, fee_addons, status, ended_at)
SELECT p.merchant_id, p.subscription_id, p.period_start - make_interval(months => k),
       p.period_start - make_interval(months => k - 1), p.plan_code, p.plan_version, p.addons,
       p.fee_plan_code, p.fee_plan_version, p.fee_addons, 'ended',
       p.period_start - make_interval(months => k - 1)
FROM subscription_periods p CROSS JOIN generate_series(1, $2::int) AS k
WHERE p.merchant_id = $1 AND p.status = 'open'
RETURNING subscription_id, period_start, period_end
"""


_HISTORY_SUBSCRIPTION = """
SELECT merchant_id, currency, timezone FROM subscriptions WHERE status <> 'canceled'
"""


# Each period's totals, the shape ingest keeps them in (one row per period, metric and slot;
# here all in slot 0, as if one connection had sent them).
_HISTORY_TOTALS = """
INSERT INTO usage_aggregates (merchant_id, subscription_id, period_start, metric, slot,
                              event_count, quantity, gmv_minor)
VALUES ($1, $2, $3, 'orders', 0, $4::bigint, $4::bigint::numeric, $5::bigint)
"""


# The columns ``usage_store`` writes (the rest keep their defaults: received_at, voided_at,
# properties NULL as for an event sent without any).
_EVENT_COLUMNS: Final = [
    "merchant_id",
    "transaction_id",
    "subscription_id",
    "period_start",
    "metric",
    "occurred_at",
    "quantity",
    "gmv_minor",
]


_LEDGER_COLUMNS: Final = ["merchant_id", "transaction_id", "content_hash", "occurred_at"]


_HISTORY_CHUNK: Final = 100_000


_STAMPS: Final = 1_000
"""Instants a period's events are spread over; event i has instant i mod 1,000."""


_GMV_CYCLE: Final = 19_000
"""Event i carries 1,000 + i mod 19,000 minor units of GMV (a multiple of ``_STAMPS``, so an
event's content, and its hash, repeats every 19,000 events)."""


def _gmv_sum(first: int, end: int) -> int:
    """The GMV of history events ``first`` to ``end - 1``."""

    def below(n: int) -> int:  # the sum of i mod 19,000 for i < n
        whole, rest = divmod(n, _GMV_CYCLE)
        return whole * (_GMV_CYCLE * (_GMV_CYCLE - 1) // 2) + rest * (rest - 1) // 2

    return 1_000 * (end - first) + below(end) - below(first)


@dataclass(frozen=True)
class _HistoryPeriod:
    merchant_id: UUID
    subscription_id: UUID
    start: datetime
    first: int
    """The first event number of the period; its events are ``first`` to ``end - 1``."""
    end: int
    stamps: list[str]
    """``_STAMPS`` instants inside the period, as COPY text."""
    hashes: list[str]
    """The content hash of event i at ``i % _GMV_CYCLE``, as COPY text (what ingest stores)."""


def _history_period(
    merchant_id: UUID,
    subscription_id: UUID,
    period: tuple[datetime, datetime],
    events: tuple[int, int],
    currency: str,
) -> _HistoryPeriod:
    from service.usage.ingest import content_hash

    start, end = period
    instants = [start + (end - start) * step / _STAMPS for step in range(_STAMPS)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = [str((instant - epoch) // timedelta(microseconds=1)) for instant in instants]
    hashes = [
        "\\\\x"
        + content_hash("orders", micros[i % _STAMPS], "1", str(1_000 + i), currency, "").hex()
        for i in range(_GMV_CYCLE)
    ]
    return _HistoryPeriod(
        merchant_id,
        subscription_id,
        start,
        events[0],
        events[1],
        [instant.astimezone(UTC).isoformat() for instant in instants],
        hashes,
    )


def _history_chunk(period: _HistoryPeriod, first: int, end: int) -> tuple[bytes, bytes]:
    """COPY text of events ``first`` to ``end - 1`` of ``period``: the raw events, the ledger."""
    stamps, hashes = period.stamps, period.hashes
    head = f"{period.merchant_id}\thist-"
    middle = f"\t{period.subscription_id}\t{period.start.isoformat()}\torders\t"
    events = "".join(
        [
            f"{head}{i:010d}{middle}{stamps[i % _STAMPS]}\t1\t{1_000 + i % _GMV_CYCLE}\n"
            for i in range(first, end)
        ]
    )
    ledger = "".join(
        [
            f"{head}{i:010d}\t{hashes[i % _GMV_CYCLE]}\t{stamps[i % _STAMPS]}\n"
            for i in range(first, end)
        ]
    )
    return events.encode(), ledger.encode()


async def preload_history(dsn: str, events: int, months: int) -> dict[str, Any]:
    """``events`` events in ``months`` ended periods before the bench merchant's open one:
    COPY of the raw events and their ledger rows (two connections, the next chunk made while
    the last one is written), then each period's totals, as ingest would have left them."""
    from zoneinfo import ZoneInfo

    import asyncpg

    events_connection = await asyncpg.connect(dsn)
    ledger_connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        subscription = await events_connection.fetchrow(_HISTORY_SUBSCRIPTION)
        assert subscription is not None, "the bench merchant has a subscription"
        merchant_id = subscription["merchant_id"]
        rows = sorted(
            await events_connection.fetch(_HISTORY_PERIODS, merchant_id, months),
            key=lambda row: row["period_start"],
        )
        periods = [
            _history_period(
                merchant_id,
                row["subscription_id"],
                (row["period_start"], row["period_end"]),
                (events * number // months, events * (number + 1) // months),
                subscription["currency"],
            )
            for number, row in enumerate(rows)
        ]
        partitions = {
            (moment.year, moment.month)
            for period in periods
            if period.end > period.first
            for moment in map(datetime.fromisoformat, period.stamps)
        }
        chunks = [
            (period, first, min(first + _HISTORY_CHUNK, period.end))
            for period in periods
            for first in range(period.first, period.end, _HISTORY_CHUNK)
        ]
        making = asyncio.ensure_future(asyncio.to_thread(_history_chunk, *chunks[0]))
        for number in range(len(chunks)):
            events_text, ledger_text = await making
            if number + 1 < len(chunks):
                making = asyncio.ensure_future(
                    asyncio.to_thread(_history_chunk, *chunks[number + 1])
                )
            await asyncio.gather(
                events_connection.copy_to_table(
                    "usage_events", source=io.BytesIO(events_text), columns=_EVENT_COLUMNS
                ),
                ledger_connection.copy_to_table(
                    "usage_transactions", source=io.BytesIO(ledger_text), columns=_LEDGER_COLUMNS
                ),
            )
        await events_connection.executemany(
            _HISTORY_TOTALS,
            [
                (
                    merchant_id,
                    period.subscription_id,
                    period.start,
                    period.end - period.first,
                    _gmv_sum(period.first, period.end),
                )
                for period in periods
            ],
        )
        seconds = time.perf_counter() - started
        await events_connection.execute("ANALYZE usage_events, usage_transactions")
        await events_connection.execute("CHECKPOINT")
    finally:
        await events_connection.close()
        await ledger_connection.close()
    chosen = periods[len(periods) // 2]
    start = chosen.start.astimezone(ZoneInfo(subscription["timezone"]))
    resend = chosen.first
    return {
        "history_month_events": chosen.end - chosen.first,
        "history_resend": (
            f'{{"transaction_id":"hist-{resend:010d}","metric":"orders",'
            f'"occurred_at":"{chosen.stamps[resend % _STAMPS]}","quantity":1,'
            f'"gmv":{{"amount_minor":{1_000 + resend % _GMV_CYCLE},'
            f'"currency":"{subscription["currency"]}"}}}}'
            if chosen.end > chosen.first
            else None
        ),
        "history_seconds": seconds,
        "history_rows_per_s": events / seconds,
        "history_partitions": len(partitions),
        "history_month": f"{start.year:04d}-{start.month:02d}",
    }
