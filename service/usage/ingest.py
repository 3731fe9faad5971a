"""Recording usage events exactly once: the hot path of the metered billing API.

Each event is checked on its own (a bad one never sinks a batch), placed in the subscription
period containing its ``occurred_at`` (ended periods too: late usage keeps its real period, and
invoicing turns the difference into an adjustment line), then every good event of the request is
stored by ONE SQL statement (a call of the ``usage_store`` function), committed before the
answer:

1. the merchant's subscriptions are re-checked against the version the placement used;
2. ``usage_transactions`` takes each (merchant, transaction id) once, ``ON CONFLICT DO NOTHING``
   (the primary key decides, so concurrent re-sends of one id count once);
3. only the ids claimed there go into ``usage_events`` and into ``usage_aggregates``, one row
   per (period, metric) and connection ``slot``, so concurrent writers never queue on one row.

Ids not claimed were stored before: the stored content hash tells a duplicate from a conflict.
Rows are claimed in transaction-id order and aggregate rows in key order, so two batches that
share ids never deadlock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Final
from uuid import UUID

import msgspec

from service import wire
from service.db.coalescing import Coalescer
from service.db.engine import current as current_database
from service.errors import ConcurrentChange
from service.usage import periods as merchant_periods
from service.usage.metrics import MAX_GMV_MINOR, RULES
from service.usage.periods import BillingPeriod, MerchantPeriods, Refusal
from service.usage.schemas import EventResultOut, UsageEventIn

MAX_TRANSACTION_ID: Final = 200
_limits = {"properties_max_bytes": 16 * 1024}
"""Set once at start from the settings (``configure``): a usage event's largest properties."""


def configure(*, properties_max_bytes: int) -> None:
    _limits["properties_max_bytes"] = properties_max_bytes


AGGREGATE_SLOTS: Final = 64
"""Aggregate rows per (period, metric): a connection writes the slot of its backend pid."""

_PERIOD_REASONS: Final = frozenset(
    {
        "no_subscription",
        "before_subscription_start",
        "after_subscription_end",
        "outside_subscription",
    }
)

# One round trip, one implicit transaction: a call of the function the migrations made
# (``usage_store``; why each part of it is there: see the module docstring). On Citus the call
# goes to the node of the merchant's shard and runs there (a distributed function:
# ``service.db.distribution``). The columns travel as text joined by the unit separator
# (U+001F, which no checked value holds: transaction ids are printable, properties are JSON,
# the rest are numbers and metric names): PostgreSQL splits them faster than the driver encodes
# element by element. It answers NULL when the subscriptions changed meanwhile.
_STORE = (
    "SELECT usage_store($1::uuid, $2::bigint, $3::bigint, $4::text, $5::bytea[], $6::text,"
    " $7::text, $8::text, $9::text, $10::text, $11::uuid[], $12::timestamptz[], $13::text,"
    f" {AGGREGATE_SLOTS})"
)

_STORED_HASHES = """
SELECT transaction_id, content_hash FROM usage_transactions
WHERE merchant_id = $1 AND transaction_id = ANY($2::text[])
"""

_SEPARATOR: Final = "\x1f"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(slots=True)
class _Batch:
    """The good events of a request, column by column (as text, see ``_STORE``)."""

    indexes: list[int] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    micros: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    quantities: list[str] = field(default_factory=list)
    gmv_minor: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    period_numbers: list[str] = field(default_factory=list)
    placements: list[BillingPeriod] = field(default_factory=list)
    periods: list[BillingPeriod] = field(default_factory=list)
    """The distinct periods of the batch; ``period_numbers`` point into it."""

    def sorted_by_transaction_id(self) -> _Batch:
        order = sorted(range(len(self.transaction_ids)), key=self.transaction_ids.__getitem__)
        if all(position == index for index, position in enumerate(order)):
            return self
        batch = _Batch(periods=self.periods)
        for name in _PER_EVENT:
            column = getattr(self, name)
            setattr(batch, name, [column[position] for position in order])
        return batch


_PER_EVENT: Final = tuple(name for name in _Batch.__slots__ if name != "periods")


@dataclass(slots=True)
class Ingested:
    outcomes: list[EventResultOut]
    """One per event, in request order."""
    placements: list[BillingPeriod | None]
    """The period each accepted event counts in (None for the others)."""


async def ingest(
    merchant_id: UUID, events: Sequence[UsageEventIn], *, future_skew_seconds: int
) -> Ingested:
    """Check, place and store ``events`` for the merchant; every good one is committed."""
    started = time.monotonic()
    known = await merchant_periods.for_merchant(merchant_id)
    is_fresh = known.loaded_at >= started
    for _ in range(3):
        outcomes, placements, batch, has_period_refusal = _prepare(
            events, known, timedelta(seconds=future_skew_seconds)
        )
        if has_period_refusal and not is_fresh:
            # A refusal made from a cached copy is confirmed against the database first.
            known, is_fresh = await merchant_periods.for_merchant(merchant_id, fresh=True), True
            continue
        if not batch.transaction_ids:
            return Ingested(outcomes, placements)
        claimed = await _store(merchant_id, known, batch.sorted_by_transaction_id())
        if claimed is None:
            known, is_fresh = await merchant_periods.for_merchant(merchant_id, fresh=True), True
            continue
        await _classify(merchant_id, batch, claimed, outcomes, placements)
        return Ingested(outcomes, placements)
    raise ConcurrentChange(
        "the merchant's subscription kept changing while these events were recorded; "
        "send them again (transaction ids make that safe)"
    )


async def _record_together(
    merchant_id: UUID, events: list[UsageEventIn], *, future_skew_seconds: int
) -> list[tuple[EventResultOut, BillingPeriod | None]]:
    """Concurrent single events of one merchant, recorded by one statement (and its commit);
    each is still checked and counted on its own."""
    result = await ingest(merchant_id, events, future_skew_seconds=future_skew_seconds)
    return list(zip(result.outcomes, result.placements, strict=True))


MAX_SHARED_EVENTS: Final = 1_000
"""Most single events one statement carries; more wait for the next."""

_single_events: dict[
    int, Coalescer[UUID, UsageEventIn, tuple[EventResultOut, BillingPeriod | None]]
] = {}


async def record_one(
    merchant_id: UUID, event: UsageEventIn, *, future_skew_seconds: int
) -> tuple[EventResultOut, BillingPeriod | None]:
    """One event (the single-event endpoint): its outcome and, if accepted, its period.

    Concurrent requests of one merchant share a statement and its commit
    (`service.db.coalescing`); each is answered once the statement holding its event has
    committed."""
    coalescer = _single_events.get(future_skew_seconds)
    if coalescer is None:
        coalescer = _single_events[future_skew_seconds] = Coalescer(
            partial(_record_together, future_skew_seconds=future_skew_seconds),
            max_batch=MAX_SHARED_EVENTS,
        )
    return await coalescer.submit(merchant_id, event)


def _prepare(
    events: Sequence[UsageEventIn], known: MerchantPeriods, skew: timedelta
) -> tuple[list[EventResultOut], list[BillingPeriod | None], _Batch, bool]:
    """Check every event; the good ones (first occurrence of each id) go into the batch."""
    future_limit = known.now().astimezone(UTC) + skew
    outcomes: list[EventResultOut] = []
    placements: list[BillingPeriod | None] = [None] * len(events)
    batch = _Batch()
    first_seen: dict[str, int] = {}  # transaction id -> position in the batch
    period_numbers: dict[BillingPeriod, str] = {}  # 1-based, as PostgreSQL arrays count
    # Nearly every event of a batch falls in the period of the event before it: found by
    # identity, without hashing the period (its UUID hashes in Python) for each event.
    last_placed: BillingPeriod | None = None
    last_number = ""
    has_period_refusal = False
    for index, event in enumerate(events):
        transaction_id = event.transaction_id
        checked = _check(event, known, future_limit)
        if isinstance(checked, _Rejection):
            has_period_refusal = has_period_refusal or checked.reason in _PERIOD_REASONS
            outcomes.append(
                EventResultOut(
                    index=index,
                    transaction_id=transaction_id,
                    status="rejected",
                    reason=checked.reason,
                    field=checked.field,
                    detail=checked.detail,
                )
            )
            continue
        micros, quantity, placed, properties = checked
        gmv = event.gmv
        gmv_minor = str(gmv.amount_minor) if gmv else ""
        digest = content_hash(
            event.metric, micros, quantity, gmv_minor, gmv.currency if gmv else "", properties
        )
        earlier = first_seen.get(transaction_id)
        if earlier is not None:
            # The same id twice in one request: the first counts, the second is its duplicate.
            is_same = batch.hashes[earlier] == digest
            outcomes.append(_repeat(index, transaction_id, is_same=is_same))
            continue
        if placed is last_placed:
            period_number = last_number
        else:
            period_number = period_numbers.get(placed)
            if period_number is None:
                period_number = period_numbers[placed] = str(len(period_numbers) + 1)
            last_placed, last_number = placed, period_number
        first_seen[transaction_id] = len(batch.transaction_ids)
        batch.indexes.append(index)
        batch.transaction_ids.append(transaction_id)
        batch.hashes.append(digest)
        batch.micros.append(micros)
        batch.metrics.append(event.metric)
        batch.quantities.append(quantity)
        batch.gmv_minor.append(gmv_minor)
        batch.properties.append(properties)
        batch.period_numbers.append(period_number)
        batch.placements.append(placed)
        outcomes.append(
            EventResultOut(index=index, transaction_id=transaction_id, status="accepted")
        )
    batch.periods = list(period_numbers)
    return outcomes, placements, batch, has_period_refusal


def content_hash(
    metric: str, micros: str, quantity: str, gmv_minor: str, currency: str, properties: str
) -> bytes:
    """What ``usage_transactions.content_hash`` holds for an event's values as stored (the
    text ``_check`` makes of them): a re-send with the same hash is a duplicate, another one a
    conflict. ``billing bench usage --history`` writes the same hashes by COPY."""
    return hashlib.blake2b(
        f"{metric}|{micros}|{quantity}|{gmv_minor}|{currency}|{properties}".encode(),
        digest_size=16,
    ).digest()


@dataclass(frozen=True, slots=True)
class _Rejection:
    reason: str
    field: str | None
    detail: str


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _check(
    event: UsageEventIn, known: MerchantPeriods, future_limit: datetime
) -> _Rejection | tuple[str, str, BillingPeriod, str]:
    """One event's values as stored (epoch microseconds, canonical quantity, properties as
    JSON) and its period, or why it is refused. Values the wire rule refuses (NUL, instants
    outside the calendar) are rejected here, per event (``service.wire``)."""
    transaction_id = event.transaction_id
    if (
        not 0 < len(transaction_id) <= MAX_TRANSACTION_ID
        or "/" in transaction_id
        or not transaction_id.isprintable()
    ):
        return _Rejection(
            "invalid_transaction_id",
            "transaction_id",
            f"transaction_id must be 1-{MAX_TRANSACTION_ID} characters without '/' or "
            "control characters: the order's own id",
        )
    rule = RULES.get(event.metric)
    if rule is None:
        return _Rejection(
            "unknown_metric",
            "metric",
            f"unknown metric {event.metric[:40]!r}: expected one of {', '.join(RULES)}",
        )
    quantity = event.quantity
    if (isinstance(quantity, Decimal) and not quantity.is_finite()) or quantity <= 0:
        return _Rejection("invalid_quantity", "quantity", "quantity must be a positive number")
    if quantity > rule.max_quantity:
        return _Rejection(
            "quantity_too_large",
            "quantity",
            f"{rule.name} quantity {quantity} is above {rule.max_quantity} for one event",
        )
    if isinstance(quantity, int):  # the usual case: a JSON integer
        quantity_text = str(quantity)
    elif rule.is_whole:
        if quantity != quantity.to_integral_value():
            return _Rejection(
                "fractional_quantity", "quantity", f"{rule.name} are counted in whole numbers"
            )
        quantity_text = str(int(quantity))
    else:
        quantity = quantity.normalize()
        exponent = quantity.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -rule.max_decimal_places:
            return _Rejection(
                "too_precise",
                "quantity",
                f"{rule.name} take at most {rule.max_decimal_places} decimal places",
            )
        quantity_text = format(quantity, "f")
    occurred_at = event.occurred_at
    if occurred_at.tzinfo is None:  # JSON offsets decode to fixed zones, never to None
        return _Rejection(
            "occurred_at_without_timezone",
            "occurred_at",
            "occurred_at needs a timezone offset, e.g. 2026-11-23T10:15:00+08:00",
        )
    if (problem := wire.instant_problem(occurred_at)) is not None:
        return _Rejection("occurred_at_out_of_range", "occurred_at", f"occurred_at {problem}")
    occurred_at = occurred_at.astimezone(UTC)
    if occurred_at > future_limit:
        return _Rejection(
            "occurred_in_future",
            "occurred_at",
            f"occurred_at {occurred_at.isoformat()} is in the future: later than "
            f"{future_limit.isoformat()} (now plus the allowed clock skew)",
        )
    placed = known.place(occurred_at)
    if isinstance(placed, Refusal):
        return _Rejection(placed.reason, "occurred_at", placed.detail)
    gmv = event.gmv
    if gmv is not None:
        if not rule.has_gmv:
            return _Rejection("gmv_not_allowed", "gmv", f"{rule.name} events carry no GMV")
        if gmv.currency != placed.currency:
            return _Rejection(
                "currency_mismatch",
                "gmv.currency",
                f"GMV in {gmv.currency[:8]!r}: this subscription bills in {placed.currency}",
            )
        if not 0 <= gmv.amount_minor <= MAX_GMV_MINOR:
            return _Rejection(
                "invalid_gmv",
                "gmv.amount_minor",
                f"gmv.amount_minor must be between 0 and {MAX_GMV_MINOR}",
            )
    properties = ""
    if event.properties:
        encoded = _encode_sorted(event.properties)
        limit = _limits["properties_max_bytes"]
        if len(encoded) > limit:
            return _Rejection(
                "properties_too_large",
                "properties",
                f"properties take {len(encoded):,} bytes as JSON; at most {limit:,} are kept "
                "with an event: keep only what you need to see again",
            )
        # The value rule walks properties only when it may find something: a NUL can only be
        # there as the escape \u0000, and nesting needs as many brackets as levels.
        if (
            b"\\u0000" in encoded or encoded.count(b"{") + encoded.count(b"[") > wire.max_depth()
        ) and (problem := wire.value_problem(event.properties)):
            return _Rejection("invalid_properties", "properties", f"properties: {problem}")
        properties = encoded.decode()
    return str((occurred_at - _EPOCH) // _MICROSECOND), quantity_text, placed, properties


def _repeat(index: int, transaction_id: str, *, is_same: bool) -> EventResultOut:
    if is_same:
        return EventResultOut(index=index, transaction_id=transaction_id, status="duplicate")
    return EventResultOut(
        index=index,
        transaction_id=transaction_id,
        status="conflict",
        reason="transaction_id_reused",
        field="transaction_id",
        detail=(
            "this transaction_id was already recorded with different content; "
            "it was not counted again (void it first to correct it)"
        ),
    )


async def _store(merchant_id: UUID, known: MerchantPeriods, batch: _Batch) -> list[str] | None:
    """Store the batch; the ids this statement claimed, or None if the copy was stale."""
    join = _SEPARATOR.join
    row = await current_database().pool.fetchrow(
        _STORE,
        merchant_id,
        known.subscription_count,
        known.lock_version_sum,
        join(batch.transaction_ids),
        batch.hashes,
        join(batch.micros),
        join(batch.metrics),
        join(batch.quantities),
        join(batch.gmv_minor),
        join(batch.properties),
        [period.subscription_id for period in batch.periods],
        [period.start for period in batch.periods],
        join(batch.period_numbers),
    )
    assert row is not None
    claimed: list[str] | None = row[0]
    return claimed


async def _classify(
    merchant_id: UUID,
    batch: _Batch,
    claimed: list[str],
    outcomes: list[EventResultOut],
    placements: list[BillingPeriod | None],
) -> None:
    """Mark what was claimed as accepted with its period; the rest duplicate or conflict."""
    for position, index in enumerate(batch.indexes):
        placements[index] = batch.placements[position]
    # The batch's ids are distinct and the claimed ones are among them: as many means all.
    if len(claimed) == len(batch.transaction_ids):
        return
    claimed_ids = set(claimed)
    not_claimed = [
        position
        for position, transaction_id in enumerate(batch.transaction_ids)
        if transaction_id not in claimed_ids
    ]
    # Stored before (or concurrently, by a transaction that has committed since): compare.
    rows = await current_database().pool.fetch(
        _STORED_HASHES, merchant_id, [batch.transaction_ids[p] for p in not_claimed]
    )
    stored = {row["transaction_id"]: bytes(row["content_hash"]) for row in rows}
    for position in not_claimed:
        index = batch.indexes[position]
        transaction_id = batch.transaction_ids[position]
        placements[index] = None
        outcomes[index] = _repeat(
            index, transaction_id, is_same=stored.get(transaction_id) == batch.hashes[position]
        )
