"""Revenue figures: MRR per tier on any date, its movement per month, and billed revenue per tier
and charge type per month. The one module the exports, the API and the finance page read.

**MRR** of a subscription at an instant is what its terms in force then (plan version, add-ons,
contract overrides) bill for one whole month of recurring charges — fee, add-ons, surcharges,
recurring discounts (``plans.rating.recurring_lines`` on the calendar month containing the
instant). Usage is not recurring and is left out. A subscription counts while it is **active**
or **past_due**; **trialing** (nothing committed yet), **paused**, **suspended** and
**canceled** count zero. A trial that converts is therefore *new* MRR; a pause is *churn* and
its resume a *reactivation*. The state at an instant is replayed from ``subscription_events``
(``created``, ``status_changed``, ``plan_changed``) and the contracts effective by then, so
past dates give the figures they had then.

**Movement** is classified per merchant at each change, in the month (of the chosen timezone)
it happened: 0 → more is *new* the first time the merchant ever has MRR and *reactivation*
after; more → 0 is *churn*; otherwise a rise is *expansion* and a fall *contraction*. A move
is filed under the tier after it (churn and contraction: the tier before). So, summed over
tiers, MRR at month end = MRR at month start + new + expansion + reactivation − contraction −
churn (per tier this holds unless merchants changed tier in the month).

**Billed revenue** sums the lines of finalized invoices (status open, paid or uncollectible;
void invoices billed nothing) by the month their invoice was finalized, in the chosen timezone,
and the tier of the plan that priced each line as of its service period (``LINE_PLAN_JOIN``),
by charge type (see ``CHARGE_TYPE_SQL``), plus credit notes (as ``credit_notes``, negative, by
the month they were issued, under their invoice's tier).

**Test data** (merchants on a test clock, ``TEST_MERCHANT_SQL``) is left out of every figure
unless ``includes_test`` asks for it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from uuid import UUID

from plans.contracts import resolve_terms
from plans.periods import calendar_period_containing, zone
from plans.rating import recurring_lines
from service.catalog import store as catalog_store
from service.db import engine as db_engine

COUNTING_STATUSES: Final = frozenset({"active", "past_due"})
TIERS: Final = ("basic", "advanced", "custom")
MOVEMENT_KINDS: Final = ("new", "expansion", "contraction", "churn", "reactivation")


# -- pure: states, MRR, movement ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A subscription's terms and status from ``at`` on (until its next state)."""

    at: datetime
    status: str
    plan_code: str
    plan_version: int
    addons: tuple[str, ...]


@dataclass(slots=True)
class Timeline:
    merchant_id: UUID
    subscription_id: UUID
    timezone: str
    states: list[SubscriptionState] = field(default_factory=list)

    def state_at(self, at: datetime) -> SubscriptionState | None:
        """The state in force at ``at`` (the last one starting at or before it)."""
        found = None
        for state in self.states:
            if state.at > at:
                break
            found = state
        return found


def _plan_ref(text: str) -> tuple[str, int]:
    """``"basic v2"`` → ``("basic", 2)`` (how lifecycle events name a plan version)."""
    code, _, version = text.rpartition(" v")
    return code, int(version)


def replay(events: Iterable[Mapping[str, Any]]) -> list[SubscriptionState]:
    """A subscription's states from its events (ordered by ``at``, then id)."""
    states: list[SubscriptionState] = []
    current: SubscriptionState | None = None
    for event in events:
        details = event["details"]
        if isinstance(details, str):
            details = json.loads(details)
        kind = event["kind"]
        if kind == "created":
            code, version = _plan_ref(details["plan"])
            current = SubscriptionState(
                event["at"], event["to_status"], code, version, tuple(details.get("addons") or ())
            )
        elif current is None:
            continue
        elif kind == "status_changed" and event["to_status"]:
            current = SubscriptionState(
                event["at"], event["to_status"], current.plan_code, current.plan_version,
                current.addons,
            )  # fmt: skip
        elif kind == "plan_changed":
            code, version = _plan_ref(details["to"])
            addons = details.get("addons")
            current = SubscriptionState(
                event["at"], current.status, code, version,
                tuple(addons) if addons is not None else current.addons,
            )  # fmt: skip
        else:
            continue
        states.append(current)
    return states


def classify(before_minor: int, after_minor: int, *, had_mrr_before: bool) -> str | None:
    """The movement kind of one merchant's MRR change (None when nothing moved)."""
    if before_minor == after_minor:
        return None
    if before_minor == 0:
        return "reactivation" if had_mrr_before else "new"
    if after_minor == 0:
        return "churn"
    return "expansion" if after_minor > before_minor else "contraction"


# -- MRR ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierMrr:
    tier: str
    currency: str
    mrr_minor: int
    subscriptions: int


@dataclass(frozen=True, slots=True)
class Movement:
    month: str  # YYYY-MM in the chosen timezone
    tier: str
    currency: str
    kind: str
    amount_minor: int  # signed: churn and contraction are negative
    merchants: int


class MrrBook:
    """Every subscription's history and contract, loaded once; MRR at any instant from it."""

    def __init__(
        self,
        timelines: Sequence[Timeline],
        contracts: Mapping[UUID, list[tuple[datetime, Any]]],
    ) -> None:
        self.timelines = timelines
        self.contracts = contracts
        self._amounts: dict[tuple[Any, ...], tuple[str, str, int]] = {}

    async def value(self, timeline: Timeline, at: datetime) -> tuple[str, str, int]:
        """(tier, currency, MRR minor) of one subscription at ``at``."""
        state = timeline.state_at(at)
        if state is None:
            return "", "", 0
        plan = await catalog_store.plan_version(state.plan_code, state.plan_version)
        if state.status not in COUNTING_STATUSES:
            return plan.tier, plan.currency, 0
        overrides = None
        if plan.allows_overrides:
            for effective_from, terms in self.contracts.get(timeline.merchant_id, ()):
                if effective_from <= at:
                    overrides = terms
        month = calendar_period_containing(at, timeline.timezone)
        key = (state.plan_code, state.plan_version, state.addons, json.dumps(overrides), month)
        if key not in self._amounts:
            terms = resolve_terms(plan, state.addons, overrides)
            amount = sum(line.amount_minor for line in recurring_lines(terms, month))
            self._amounts[key] = (plan.tier, plan.currency, amount)
        return self._amounts[key]

    async def mrr_at(self, at: datetime, merchant_id: UUID | None = None) -> list[TierMrr]:
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for timeline in self.timelines:
            if merchant_id is not None and timeline.merchant_id != merchant_id:
                continue
            tier, currency, amount = await self.value(timeline, at)
            if amount:
                totals[(tier, currency)][0] += amount
                totals[(tier, currency)][1] += 1
        return [
            TierMrr(tier, currency, amount, count)
            for (tier, currency), (amount, count) in sorted(totals.items(), key=_tier_key)
        ]

    async def movements(self, start: datetime, end: datetime, tz_name: str) -> list[Movement]:
        """MRR movement of every change in [start, end), summed per month, tier and kind."""
        by_merchant: dict[UUID, list[Timeline]] = defaultdict(list)
        for timeline in self.timelines:
            by_merchant[timeline.merchant_id].append(timeline)
        sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        tz = zone(tz_name)
        for merchant_id, timelines in by_merchant.items():
            points = sorted(
                {s.at for t in timelines for s in t.states}
                | {at for at, _ in self.contracts.get(merchant_id, ())}
            )
            before = (None, "", 0)
            had_mrr = False
            for at in points:
                after = await self._merchant_value(timelines, at)
                kind = classify(before[2], after[2], had_mrr_before=had_mrr)
                if kind is not None and start <= at < end:
                    tier, currency = (
                        (before[0], before[1]) if kind in ("churn", "contraction")
                        else (after[0], after[1])
                    )  # fmt: skip
                    key = (at.astimezone(tz).strftime("%Y-%m"), tier or "", currency, kind)
                    sums[key][0] += after[2] - before[2]
                    sums[key][1] += 1
                had_mrr = had_mrr or after[2] > 0
                before = after
        return [
            Movement(month, tier, currency, kind, amount, merchants)
            for (month, tier, currency, kind), (amount, merchants) in sorted(
                sums.items(), key=lambda item: (item[0][0], _tier_rank(item[0][1]), item[0][2],
                                                MOVEMENT_KINDS.index(item[0][3]))
            )
        ]  # fmt: skip

    async def _merchant_value(
        self, timelines: Sequence[Timeline], at: datetime
    ) -> tuple[str | None, str, int]:
        """A merchant's MRR at ``at`` and the tier and currency of the subscription paying it."""
        tier: str | None = None
        currency = ""
        total = 0
        for timeline in timelines:
            sub_tier, sub_currency, amount = await self.value(timeline, at)
            if amount:
                tier, currency = sub_tier, sub_currency
                total += amount
        return tier, currency, total


def _tier_rank(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


def _tier_key(item: tuple[tuple[str, str], Any]) -> tuple[int, str]:
    return (_tier_rank(item[0][0]), item[0][1])


async def load_book(
    merchant_id: UUID | None = None,
    *,
    merchant_ids: Sequence[UUID] | None = None,
    includes_test: bool = False,
) -> MrrBook:
    """Every subscription's history (or some merchants') and the contracts, in two queries;
    test merchants' (on a test clock) only when ``includes_test``."""
    pool = db_engine.current().pool
    wanted = list(merchant_ids) if merchant_ids is not None else None
    if merchant_id is not None:
        wanted = [merchant_id]
    # Reads every subscription's history at once: MRR needs all of it, and it is small
    # next to invoices and usage (a few events per subscription per month).
    rows = await pool.fetch(
        "SELECT e.merchant_id, e.subscription_id, s.timezone, e.kind, e.to_status, e.at,"
        " e.details::text AS details FROM subscription_events e"
        " JOIN subscriptions s ON s.merchant_id = e.merchant_id AND s.id = e.subscription_id"
        " JOIN merchants m ON m.id = e.merchant_id"
        " WHERE e.kind IN ('created', 'status_changed', 'plan_changed')"
        " AND ($1::uuid[] IS NULL OR e.merchant_id = ANY($1::uuid[]))"
        f" AND ($2 OR NOT {TEST_MERCHANT_SQL})"
        " ORDER BY e.merchant_id, e.subscription_id, e.at, e.id",
        wanted,
        includes_test,
    )
    grouped: dict[tuple[UUID, UUID], list[Any]] = defaultdict(list)
    zones: dict[tuple[UUID, UUID], str] = {}
    for row in rows:
        key = (row["merchant_id"], row["subscription_id"])
        grouped[key].append(row)
        zones[key] = row["timezone"]
    timelines = [
        Timeline(merchant, subscription, zones[(merchant, subscription)], replay(events))
        for (merchant, subscription), events in grouped.items()
    ]
    contract_rows = await pool.fetch(
        "SELECT merchant_id, effective_from, overrides::text AS overrides FROM contracts"
        " WHERE ($1::uuid[] IS NULL OR merchant_id = ANY($1::uuid[]))"
        " ORDER BY merchant_id, effective_from",
        wanted,
    )
    contracts: dict[UUID, list[tuple[datetime, Any]]] = defaultdict(list)
    for row in contract_rows:
        contracts[row["merchant_id"]].append((row["effective_from"], json.loads(row["overrides"])))
    return MrrBook(timelines, contracts)


_LAST_MOMENT: Final = timedelta(microseconds=1)


def end_of_day(day: date, tz_name: str) -> datetime:
    """The last instant of a date in a zone: MRR "on" a date is MRR as the day ends (a
    cancellation at the next midnight has not happened yet)."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone(tz_name)) - _LAST_MOMENT


def month_start(year: int, month: int, tz_name: str) -> datetime:
    return datetime(year, month, 1, tzinfo=zone(tz_name))


def month_bounds(first: date, last: date) -> list[tuple[int, int]]:
    """Every (year, month) from ``first``'s month to ``last``'s, inclusive."""
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


async def mrr_on(
    day: date, tz_name: str, merchant_id: UUID | None = None, *, includes_test: bool = False
) -> list[TierMrr]:
    book = await load_book(merchant_id, includes_test=includes_test)
    return await book.mrr_at(end_of_day(day, tz_name))


@dataclass(frozen=True, slots=True)
class MonthMrr:
    month: str
    tiers: list[TierMrr]


async def mrr_by_month(
    first: date,
    last: date,
    tz_name: str,
    merchant_id: UUID | None = None,
    *,
    includes_test: bool = False,
) -> list[MonthMrr]:
    """MRR per tier at the end of every month from ``first`` to ``last`` (the chart's series)."""
    book = await load_book(merchant_id, includes_test=includes_test)
    series = []
    for year, month in month_bounds(first, last):
        next_start = month_start(year + month // 12, month % 12 + 1, tz_name)
        series.append(
            MonthMrr(f"{year:04d}-{month:02d}", await book.mrr_at(next_start - _LAST_MOMENT))
        )
    return series


async def mrr_movement(
    start: datetime,
    end: datetime,
    tz_name: str,
    merchant_id: UUID | None = None,
    *,
    includes_test: bool = False,
) -> list[Movement]:
    book = await load_book(merchant_id, includes_test=includes_test)
    return await book.movements(start, end, tz_name)


# -- billed revenue ----------------------------------------------------------------------------

CHARGE_TYPE_SQL: Final = """
CASE
    WHEN l.kind = 'fee' THEN 'fees'
    WHEN l.kind = 'addon' THEN 'addons'
    WHEN l.kind IN ('usage', 'adjustment') AND l.charge_code = 'orders' THEN 'per_order'
    WHEN l.kind IN ('usage', 'adjustment') AND l.charge_code = 'gmv_fee' THEN 'gmv_share'
    WHEN l.kind IN ('usage', 'adjustment') AND l.charge_code = 'support_hours' THEN 'per_hour'
    WHEN l.kind IN ('usage', 'adjustment') THEN 'usage_other'
    WHEN l.kind = 'minimum_true_up' THEN 'minimums'
    WHEN l.kind = 'proration' THEN 'proration'
    WHEN l.kind = 'discount' THEN 'discounts'
    WHEN l.kind = 'credit' THEN 'credits'
    ELSE l.kind
END
"""
"""How invoice lines map to charge types (fees, per-order, GMV share, add-ons, credits, ...)."""

CHARGE_TYPES: Final = (
    "fees", "addons", "per_order", "gmv_share", "per_hour", "usage_other", "minimums",
    "proration", "discounts", "credits", "credit_notes",
)  # fmt: skip

BILLED_STATUSES: Final = ("open", "paid", "uncollectible")

TEST_MERCHANT_SQL: Final = "m.test_clock_id IS NOT NULL"
"""Test data: a merchant attached to a test clock (the demo's merchants are, and they live in a
throw-away database anyway). Finance figures and exports leave test data out unless asked."""

LINE_PLAN_JOIN: Final = """
LEFT JOIN LATERAL (
    SELECT coalesce(e.details->>'to', e.details->>'plan') AS plan_ref
    FROM subscription_events e
    WHERE e.merchant_id = i.merchant_id AND e.subscription_id = i.subscription_id
      AND e.kind IN ('created', 'plan_changed')
      AND CASE
          WHEN l.kind IN ('usage', 'adjustment', 'minimum_true_up') THEN e.at < l.period_end
          WHEN l.kind = 'proration' AND l.amount_minor < 0 THEN e.at < l.period_start
          ELSE e.at <= l.period_start
      END
    ORDER BY e.at DESC, e.id DESC
    LIMIT 1
) line_plan ON true
LEFT JOIN plan_versions lpv
    ON lpv.code = regexp_replace(line_plan.plan_ref, ' v[0-9]+$', '')
   AND lpv.version = substring(line_plan.plan_ref FROM ' v([0-9]+)$')::int
"""
"""The plan a line was priced under, from the subscription's history, as of the line's service
period: fees, add-ons, discounts and credits (billed in advance for their period) the plan at
its start; usage, minimums and late-usage adjustments (rated under the terms in force at the
end) the plan just before its end; a credit for unused time (a negative proration) the plan
just before the change it credits. So an upgrade's "Basic monthly service fee … unused time"
credit is basic, even on the invoice the advanced plan made."""

LINE_TIER_SQL: Final = "coalesce(lpv.tier, pv.tier, i.plan_code)"

# The revenue rows as SQL, so that the export streams the very rows the page sums: month, tier,
# charge type, currency, amount, line count. $1/$2 bound the accounting instant, $3 the zone,
# $4 the merchant (or NULL), $5 whether test merchants count.
REVENUE_SQL: Final = f"""
SELECT month, tier, charge_type, currency, sum(amount_minor)::bigint AS amount_minor,
       count(*)::bigint AS lines
FROM (
    SELECT to_char(i.finalized_at AT TIME ZONE $3, 'YYYY-MM') AS month,
           {LINE_TIER_SQL} AS tier, {CHARGE_TYPE_SQL} AS charge_type,
           l.currency, l.amount_minor
    FROM invoices i
    JOIN merchants m ON m.id = i.merchant_id
    JOIN invoice_lines l ON l.merchant_id = i.merchant_id AND l.invoice_id = i.id
    LEFT JOIN plan_versions pv ON pv.code = i.plan_code AND pv.version = i.plan_version
    {LINE_PLAN_JOIN}
    WHERE i.status IN ('open', 'paid', 'uncollectible')
      AND i.finalized_at >= $1 AND i.finalized_at < $2
      AND ($4::uuid IS NULL OR i.merchant_id = $4) AND ($5 OR NOT {TEST_MERCHANT_SQL})
    UNION ALL
    SELECT to_char(n.created_at AT TIME ZONE $3, 'YYYY-MM'), coalesce(pv.tier, i.plan_code),
           'credit_notes', n.currency, -n.amount_minor
    FROM credit_notes n
    JOIN merchants m ON m.id = n.merchant_id
    JOIN invoices i ON i.merchant_id = n.merchant_id AND i.id = n.invoice_id
    LEFT JOIN plan_versions pv ON pv.code = i.plan_code AND pv.version = i.plan_version
    WHERE n.created_at >= $1 AND n.created_at < $2
      AND ($4::uuid IS NULL OR n.merchant_id = $4) AND ($5 OR NOT {TEST_MERCHANT_SQL})
) rows
GROUP BY month, tier, charge_type, currency
ORDER BY month,
         array_position(ARRAY['basic', 'advanced', 'custom']::text[], tier::text) NULLS LAST,
         tier, charge_type, currency
"""


@dataclass(frozen=True, slots=True)
class BilledRevenue:
    month: str
    tier: str
    charge_type: str
    currency: str
    amount_minor: int
    lines: int


async def billed_revenue(
    start: datetime,
    end: datetime,
    tz_name: str,
    merchant_id: UUID | None = None,
    *,
    includes_test: bool = False,
) -> list[BilledRevenue]:
    rows = await db_engine.current().pool.fetch(
        REVENUE_SQL, start, end, tz_name, merchant_id, includes_test
    )
    return [BilledRevenue(**dict(row)) for row in rows]


# -- the month at a glance (the finance page) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthSummary:
    month: str
    currency: str
    billed_minor: int
    collected_minor: int
    invoice_status_counts: dict[str, int]


async def month_summary(
    year: int, month: int, tz_name: str, *, includes_test: bool = False
) -> list[MonthSummary]:
    """Per currency: the totals of invoices finalized in the month (billed), the payments
    received in it (collected, from ``payments``), and the month's invoices by status; test
    merchants' only when ``includes_test``."""
    start = month_start(year, month, tz_name)
    end = month_start(year + month // 12, month % 12 + 1, tz_name)
    pool = db_engine.current().pool
    invoices = await pool.fetch(
        "SELECT i.currency, i.status, count(*)::bigint AS n,"
        " sum(CASE WHEN i.status IN ('open', 'paid', 'uncollectible') THEN i.total_minor"
        " ELSE 0 END)::bigint AS billed"
        " FROM invoices i JOIN merchants m ON m.id = i.merchant_id"
        " WHERE i.finalized_at >= $1 AND i.finalized_at < $2"
        f" AND ($3 OR NOT {TEST_MERCHANT_SQL})"
        " GROUP BY i.currency, i.status ORDER BY i.currency, i.status",
        start,
        end,
        includes_test,
    )
    payments = await pool.fetch(
        "SELECT p.currency, sum(p.amount_minor)::bigint AS collected FROM payments p"
        " JOIN merchants m ON m.id = p.merchant_id"
        f" WHERE p.paid_at >= $1 AND p.paid_at < $2 AND ($3 OR NOT {TEST_MERCHANT_SQL})"
        " GROUP BY p.currency",
        start,
        end,
        includes_test,
    )
    label = f"{year:04d}-{month:02d}"
    billed: dict[str, int] = defaultdict(int)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in invoices:
        billed[row["currency"]] += row["billed"]
        counts[row["currency"]][row["status"]] = row["n"]
    collected = {row["currency"]: row["collected"] for row in payments}
    return [
        MonthSummary(label, currency, billed[currency], collected.get(currency, 0),
                     counts[currency])
        for currency in sorted(set(billed) | set(collected))
    ]  # fmt: skip
