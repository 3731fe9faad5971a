"""Events no request causes, found by the worker: trials about to end, usage reaching the orders a
plan includes, and usage that another plan would bill for less.

Off the ingest hot path on purpose: ingest only adds to the per-period totals it already keeps;
the worker reads those totals (``usage_aggregates``, a few rows per subscription) every
``BILLING_USAGE_WATCH_SECONDS`` and looks closer only at subscriptions whose usage changed since
it last looked, of merchants some endpoint listens to for these types (none: no look at all).
Each of these events happens once per period: a row in ``outgoing_event_marks`` (its primary
key) is taken in the same transaction as the event, so a second worker, or a second look, finds
it taken and emits nothing. A threshold crossed before anyone listened is told when someone
does (it is still true), once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import structlog

from plans.charges import Package, PerUnit, UsageAggregate
from plans.compare import compare_plans
from plans.contracts import Terms, resolve_terms
from plans.money import plain_decimal
from plans.rating import rate_terms
from service.catalog import store as catalog_store
from service.catalog.schemas import QuoteOut
from service.db.engine import current as current_database
from service.db.engine import is_unavailable as is_database_unavailable
from service.db.tables import Subscription
from service.outgoing import emit
from service.outgoing.types import (
    TRIAL_WILL_END_AHEAD_DAYS,
    USAGE_THRESHOLD_PERCENTS,
    EventType,
)
from service.subscriptions import lifecycle
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.usage import summary as usage_summary
from service.usage.aggregates import period_aggregates
from service.usage.periods import BillingPeriod
from service.usage.schemas import UsageSummaryOut

log = structlog.get_logger(__name__)

_BATCH = 500

# Merchants on a test clock live at its time; everyone else at the system time ($1).
_TRIALS_ENDING = """
SELECT s.merchant_id, s.id, s.trial_end, coalesce(tc.frozen_time, $1) AS now
FROM subscriptions s
JOIN merchants m ON m.id = s.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE s.status = 'trialing'
  AND s.trial_end > coalesce(tc.frozen_time, $1)
  AND s.trial_end <= coalesce(tc.frozen_time, $1) + $2::interval
  AND ($3::uuid[] IS NULL OR s.merchant_id = ANY($3::uuid[]))
  AND NOT EXISTS (
      SELECT 1 FROM outgoing_event_marks mark
      WHERE mark.merchant_id = s.merchant_id
        AND mark.mark = 'trial_will_end:' || s.id || ':' || extract(epoch FROM s.trial_end)::bigint)
ORDER BY s.trial_end
LIMIT $4
"""

# Subscriptions with usage in their current period, a page at a time (keyset on the key), each
# with its period's orders and events counted so far (the few slot rows of its totals).
_WITH_USAGE = """
SELECT s.merchant_id, s.id, s.current_period_start, coalesce(tc.frozen_time, $1) AS now,
       u.orders, u.events
FROM subscriptions s
JOIN merchants m ON m.id = s.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
CROSS JOIN LATERAL (
    SELECT coalesce(sum(a.quantity) FILTER (WHERE a.metric = 'orders'), 0) AS orders,
           coalesce(sum(a.event_count), 0) AS events
    FROM usage_aggregates a
    WHERE a.merchant_id = s.merchant_id AND a.subscription_id = s.id
      AND a.period_start = s.current_period_start) u
WHERE s.status IN ('active', 'past_due') AND u.events > 0
  AND ($2::uuid[] IS NULL OR s.merchant_id = ANY($2::uuid[]))
  AND (s.merchant_id, s.id) > ($3::uuid, $4::uuid)
ORDER BY s.merchant_id, s.id
LIMIT $5
"""

_TAKEN = """
SELECT mark FROM outgoing_event_marks WHERE merchant_id = $1 AND mark = ANY($2::text[])
"""

# Who listens to each of these types: every merchant (an operator's endpoint for all), or some.
_LISTENERS = """
SELECT type,
       bool_or(e.merchant_id = $2 AND e.for_merchant_id IS NULL) AS everyone,
       array_remove(array_agg(DISTINCT CASE WHEN e.merchant_id = $2 THEN e.for_merchant_id
                                            ELSE e.merchant_id END), NULL) AS merchants
FROM webhook_endpoints e, unnest($1::text[]) AS type
WHERE e.deleted_at IS NULL AND (type = ANY(e.event_types) OR '*' = ANY(e.event_types))
GROUP BY type
"""

_WATCHED = (
    EventType.SUBSCRIPTION_TRIAL_WILL_END,
    EventType.USAGE_THRESHOLD_REACHED,
    EventType.PLAN_CHEAPER_AVAILABLE,
)

_NO_ID = UUID(int=0)

Seen = dict[tuple[UUID, datetime], tuple[int, bool, bool]]
"""What the last look saw per (subscription, period start): events counted, and whether
thresholds and cheaper plans were listened to."""


@dataclass(frozen=True, slots=True)
class Listeners:
    """Which merchants some endpoint listens to, per watched type."""

    everyone: frozenset[EventType]
    merchants: dict[EventType, frozenset[UUID]]

    def hear(self, event_type: EventType, merchant_id: UUID) -> bool:
        return event_type in self.everyone or merchant_id in self.merchants.get(event_type, ())

    def scope(self, types: Sequence[EventType], wanted: list[UUID] | None) -> list[UUID] | None:
        """The merchants to look at for ``types`` (None: all of them), within ``wanted``."""
        if any(event_type in self.everyone for event_type in types):
            return wanted
        some = set().union(*(self.merchants.get(event_type, frozenset()) for event_type in types))
        return sorted(some if wanted is None else some & set(wanted))


async def listeners() -> Listeners:
    rows = await current_database().pool.fetch(
        _LISTENERS, [event_type.value for event_type in _WATCHED], PLATFORM_MERCHANT_ID
    )
    return Listeners(
        everyone=frozenset(EventType(row["type"]) for row in rows if row["everyone"]),
        merchants={EventType(row["type"]): frozenset(row["merchants"]) for row in rows},
    )


@dataclass
class WatchSummary:
    trials_ending: int = 0
    thresholds: int = 0
    cheaper_plans: int = 0


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def trial_mark(subscription_id: UUID, trial_end: datetime) -> str:
    return f"trial_will_end:{subscription_id}:{_epoch(trial_end)}"


def threshold_mark(subscription_id: UUID, period_start: datetime, percent: int) -> str:
    return f"usage_threshold:{subscription_id}:{_epoch(period_start)}:{percent}"


def cheaper_mark(subscription_id: UUID, period_start: datetime) -> str:
    return f"cheaper_plan:{subscription_id}:{_epoch(period_start)}"


async def run(
    *,
    now: datetime,
    tax_rate: Decimal,
    seen: Seen | None = None,
    merchant_ids: Sequence[UUID] | None = None,
) -> WatchSummary:
    """One look. ``seen`` (kept by the caller between looks) skips subscriptions whose usage
    has not changed since; it is replaced by what this look saw."""
    summary = WatchSummary()
    wanted = list(merchant_ids) if merchant_ids is not None else None
    heard = await listeners()
    trials = heard.scope([EventType.SUBSCRIPTION_TRIAL_WILL_END], wanted)
    if trials != []:
        await _trials_ending(now, trials, summary)
    usage_types = [EventType.USAGE_THRESHOLD_REACHED, EventType.PLAN_CHEAPER_AVAILABLE]
    usage = heard.scope(usage_types, wanted)
    if usage != []:
        await _usage(now, tax_rate, usage, heard, seen, summary)
    elif seen is not None:
        seen.clear()
    return summary


async def _trials_ending(now: datetime, wanted: list[UUID] | None, summary: WatchSummary) -> None:
    rows = await current_database().pool.fetch(
        _TRIALS_ENDING, now, timedelta(days=TRIAL_WILL_END_AHEAD_DAYS), wanted, _BATCH
    )
    for row in rows:
        async with current_database().engine.transaction():
            if not await emit.once(row["merchant_id"], trial_mark(row["id"], row["trial_end"])):
                continue
            sub = await _subscription(row["merchant_id"], row["id"])
            if sub is not None and sub.status == "trialing":
                await emit.subscription_trial_will_end(sub, at=row["now"])
                summary.trials_ending += 1


async def _usage(
    now: datetime,
    tax_rate: Decimal,
    wanted: list[UUID] | None,
    heard: Listeners,
    seen: Seen | None,
    summary: WatchSummary,
) -> None:
    pool = current_database().pool
    looked: Seen = {}
    after = (_NO_ID, _NO_ID)
    while True:
        rows = await pool.fetch(_WITH_USAGE, now, wanted, *after, _BATCH)
        for row in rows:
            key = (row["id"], row["current_period_start"])
            looked[key] = (
                row["events"],
                heard.hear(EventType.USAGE_THRESHOLD_REACHED, row["merchant_id"]),
                heard.hear(EventType.PLAN_CHEAPER_AVAILABLE, row["merchant_id"]),
            )
            if seen is not None and seen.get(key) == looked[key]:
                continue  # nothing new since the last look
            try:
                await _look_at_usage(row, tax_rate, heard, summary)
            except Exception as error:  # one subscription's trouble must not stop the others'
                if is_database_unavailable(error):
                    raise  # none of the others can be looked at either: the pass backs off
                log.exception("usage_watch_failed", subscription_id=str(row["id"]))
                looked.pop(key, None)  # look again next time
        if len(rows) < _BATCH:
            break
        after = (rows[-1]["merchant_id"], rows[-1]["id"])
    if seen is not None:
        seen.clear()
        seen.update(looked)


async def _look_at_usage(
    row: Any, tax_rate: Decimal, heard: Listeners, summary: WatchSummary
) -> None:
    merchant_id, subscription_id = row["merchant_id"], row["id"]
    period_start, at = row["current_period_start"], row["now"]
    marks = {
        percent: threshold_mark(subscription_id, period_start, percent)
        for percent in USAGE_THRESHOLD_PERCENTS
    }
    cheaper = cheaper_mark(subscription_id, period_start)
    taken = {
        found["mark"]
        for found in await current_database().pool.fetch(
            _TAKEN, merchant_id, [*marks.values(), cheaper]
        )
    }
    # Nobody listening counts as told: looked at again once someone listens.
    if not heard.hear(EventType.USAGE_THRESHOLD_REACHED, merchant_id):
        taken |= set(marks.values())
    if not heard.hear(EventType.PLAN_CHEAPER_AVAILABLE, merchant_id):
        taken.add(cheaper)
    if taken >= {*marks.values(), cheaper}:
        return
    sub = await _subscription(merchant_id, subscription_id)
    if sub is None or sub.current_period_start != period_start:
        return  # moved on since the page was read: the next look sees the new period
    terms = await lifecycle.terms_of(sub, at)
    included = included_orders(terms)
    orders = Decimal(row["orders"])
    reached = [
        percent
        for percent in USAGE_THRESHOLD_PERCENTS
        if included > 0 and orders * 100 >= included * percent and marks[percent] not in taken
    ]
    aggregates = await period_aggregates(merchant_id, subscription_id, period_start)
    nudge = None if cheaper in taken else await _cheaper_plan(sub, terms, aggregates, tax_rate)
    if not reached and nudge is None:
        return
    period = BillingPeriod(
        subscription_id=sub.id,
        start=sub.current_period_start,
        end=sub.current_period_end,
        currency=sub.currency,
    )

    async def usage_object() -> UsageSummaryOut:
        totals = await usage_summary.totals(merchant_id, [period])
        return UsageSummaryOut.from_summary(
            usage_summary.Summary(
                period="current", currency=sub.currency, periods=[period], totals=totals
            )
        )

    async with current_database().engine.transaction():
        for percent in reached:
            if await emit.once(merchant_id, marks[percent]):
                await emit.usage_threshold_reached(
                    merchant_id,
                    at=at,
                    summary=usage_object,
                    threshold={
                        "percent": percent,
                        "included_orders": plain_decimal(included),
                        "orders": plain_decimal(orders),
                        "subscription_id": str(sub.id),
                        "plan_code": sub.plan_code,
                        "plan_version": sub.plan_version,
                    },
                )
                summary.thresholds += 1
        if nudge is not None and await emit.once(merchant_id, cheaper):
            quote, figures = nudge
            await emit.plan_cheaper_available(merchant_id, at=at, quote=quote, figures=figures)
            summary.cheaper_plans += 1
    log.info(
        "usage_watch_emitted",
        subscription_id=str(sub.id),
        thresholds=reached,
        cheaper_plan=nudge is not None,
    )


def included_orders(terms: Terms) -> Decimal:
    """Orders the terms include before the per-order price applies (0: none included)."""
    return sum(
        (
            charge.included_units
            for charge in terms.charges
            if isinstance(charge, PerUnit | Package) and charge.metric == "orders"
        ),
        Decimal(0),
    )


async def _cheaper_plan(
    sub: Subscription, terms: Terms, aggregates: dict[str, UsageAggregate], tax_rate: Decimal
) -> tuple[Any, dict[str, Any]] | None:
    """When another published plan (latest version, same currency, not a negotiated one) bills
    this period's usage for less than the subscription's own terms: the comparison (as the
    quote API answers it) and the figures. Negotiated subscriptions are never nudged."""
    if terms.plan.allows_overrides:
        return None
    catalog = await catalog_store.current()
    period = lifecycle.full_period(sub, sub.current_period_start)

    def total(plan_terms: Terms) -> int:
        return rate_terms(
            plan_terms,
            usage_period=period,
            fee_period=period,
            aggregates=aggregates,
            tax_rate=tax_rate,
        ).total_minor

    own = total(terms)
    chosen_addons = {
        plan.code: [code for code in sub.addons if code in {addon.code for addon in plan.addons}]
        for plan in catalog.latest_plans()
    }
    best = None
    for plan in catalog.latest_plans():
        if plan.code == sub.plan_code or plan.allows_overrides or plan.currency != sub.currency:
            continue
        cost = total(resolve_terms(plan, chosen_addons[plan.code]))
        if cost < own and (best is None or cost < best[1]):
            best = (plan, cost)
    if best is None:
        return None
    plan, cost = best

    def quote() -> QuoteOut:
        comparison = compare_plans(
            catalog,
            period=period,
            aggregates=aggregates,
            addons=chosen_addons,
            tax_rate=tax_rate,
            currency=sub.currency,
        )
        return QuoteOut.from_comparison(comparison, period)

    figures = {
        "subscription_id": str(sub.id),
        "currency": sub.currency,
        "period_start": sub.current_period_start,
        "period_end": sub.current_period_end,
        "current_plan": {
            "plan_code": sub.plan_code,
            "plan_version": sub.plan_version,
            "total_minor": own,
        },
        "cheaper_plan": {
            "plan_code": plan.code,
            "plan_version": plan.version,
            "plan_name": plan.name,
            "total_minor": cost,
        },
        "saving_minor": own - cost,
    }
    return quote, figures


async def _subscription(merchant_id: UUID, subscription_id: UUID) -> Subscription | None:
    return (
        await Subscription.objects()
        .where(Subscription.merchant_id == merchant_id)
        .where(Subscription.id == subscription_id)
        .first()
    )
