"""Period close: every ended subscription period, once its grace window for late usage has
passed, becomes exactly one finalized invoice.

Periods of different merchants are closed in batches, one transaction a batch: the due periods
are found without locks, a page at a time, then each is claimed with ``FOR UPDATE SKIP LOCKED``
by a statement naming its merchant (all of a batch's claims in one round trip), what the
invoices need is read a statement per kind for the batch, each invoice is rated alone, and the
invoices, their lines and their Stripe pushes are written a statement per kind. Any number of
workers run side by side, and a crash leaves each period with its whole invoice or none; the
unique key on (merchant, subscription, period start) makes a repeat pass change nothing. A
merchant's periods are closed in period order, each only once the earlier ones have their
invoices, so invoice numbers follow the periods. Previews (the upcoming invoice, change quotes,
the dry run) run these same units inside a transaction that is rolled back
(``service.invoicing.simulation``). What a batch reads beside its claims, and records after its
invoices, is ``service.invoicing.close_facts``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import structlog

from plans.charges import UsageAggregate
from plans.lines import InvoiceLine
from plans.periods import Period, period_containing, zone
from plans.rating import LateUsage
from plans.sla import SlaReport
from service.catalog import store as catalog_store
from service.db.engine import transaction_connection
from service.db.tables import (
    PendingLine,
    Subscription,
)
from service.invoicing import credit_balance, drafts, invoices, numbering
from service.invoicing.close_facts import (
    Facts,
    balance_after,
    late_usage,
    mark_lines_invoiced,
    read_facts,
    record_billed,
    terms,
    waiting_lines,
)
from service.invoicing.simulation import in_preview, reader, unit
from service.subscriptions import lifecycle

log = structlog.get_logger(__name__)

# Where the merchant's clock stands: fixed by a preview ($at), else its test clock's time, else
# the system's. Every query below that needs the merchant's now spells it this way.
_MERCHANT_TIME = "coalesce({at}::timestamptz, tc.frozen_time, {system})"

# Ended periods past their grace window and not yet invoiced, oldest first.
_DUE_PERIODS = f"""
SELECT sp.id, sp.merchant_id, sp.subscription_id, sp.period_start, sp.period_end
FROM subscription_periods sp
JOIN merchants m ON m.id = sp.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE sp.status = 'ended'
  AND sp.period_end + $2::interval <= {_MERCHANT_TIME.format(at="$5", system="$1")}
  AND ($3::uuid IS NULL OR sp.merchant_id = $3)
  AND (sp.period_start, sp.id) > ($6::timestamptz, $7::uuid)
  AND NOT EXISTS (
      SELECT 1 FROM invoices i
      WHERE i.merchant_id = sp.merchant_id AND i.subscription_id = sp.subscription_id
        AND i.period_start = sp.period_start AND i.kind = 'period')
ORDER BY sp.period_start, sp.id
LIMIT $4
"""
# A pass reads the due periods a page at a time, each page from where the last one ended
# ($6, $7), along ``subscription_periods_close_order_idx``: a page costs its own rows, where
# starting from the first ended period each time made every page cost every invoice made so far.
_FIRST_PAGE = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))

# Ended periods still inside their grace window: what a pass leaves for later, and until when.
_WAITING_PERIODS = f"""
SELECT sp.merchant_id, sp.subscription_id, sp.period_start, sp.period_end,
       sp.period_end + $2::interval AS due_at
FROM subscription_periods sp
JOIN merchants m ON m.id = sp.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE sp.status = 'ended'
  AND sp.period_end + $2::interval > {_MERCHANT_TIME.format(at="$5", system="$1")}
  AND ($3::uuid IS NULL OR sp.merchant_id = $3)
  AND NOT EXISTS (
      SELECT 1 FROM invoices i
      WHERE i.merchant_id = sp.merchant_id AND i.subscription_id = sp.subscription_id
        AND i.period_start = sp.period_start AND i.kind = 'period')
ORDER BY sp.period_start, sp.id
LIMIT $4
"""

_DUE_ROLLS = f"""
SELECT s.id, s.merchant_id
FROM subscriptions s
JOIN merchants m ON m.id = s.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
WHERE s.status <> 'canceled'
  AND ($2::uuid IS NULL OR s.merchant_id = $2)
  AND (s.current_period_end <= {_MERCHANT_TIME.format(at="$4", system="$1")}
       OR (s.status = 'trialing'
           AND s.trial_end <= {_MERCHANT_TIME.format(at="$4", system="$1")}))
ORDER BY s.current_period_end
LIMIT $3
"""

_DUE_IMMEDIATE = """
SELECT DISTINCT merchant_id, subscription_id FROM pending_invoice_lines
WHERE invoice_id IS NULL AND is_invoiced_immediately
  AND ($1::uuid IS NULL OR merchant_id = $1)
LIMIT $2
"""

# Balances with somewhere to go: an open invoice, or (nothing live) a payment to refund. The
# settle itself decides, under the balance row's lock; this only finds candidates.
_DUE_BALANCES = """
SELECT b.merchant_id, b.currency FROM credit_balances b
WHERE b.balance_minor > 0 AND ($1::uuid IS NULL OR b.merchant_id = $1)
  AND (EXISTS (SELECT 1 FROM invoices i
               WHERE i.merchant_id = b.merchant_id AND i.currency = b.currency
                 AND i.status = 'open' AND i.amount_due_minor > 0)
       OR (NOT EXISTS (SELECT 1 FROM subscriptions s
                       WHERE s.merchant_id = b.merchant_id AND s.status <> 'canceled')
           AND EXISTS (SELECT 1 FROM invoices i
                       WHERE i.merchant_id = b.merchant_id AND i.currency = b.currency
                         AND i.status = 'paid' AND i.amount_paid_minor > 0
                         AND i.amount_credited_minor < i.total_minor
                         AND i.dispute_status IS NULL)))
ORDER BY b.merchant_id
LIMIT $2
"""

_MERCHANT_NOW = f"""
SELECT {_MERCHANT_TIME.format(at="$3", system="$2")} AS now
FROM merchants m LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id WHERE m.id = $1
"""

TAKEN = "taken by another worker"
ALREADY_INVOICED = "already invoiced"
AFTER_EARLIER = "waits for an earlier period of the merchant to be invoiced first"
IN_GRACE = "in the grace window for late usage"


@dataclass(frozen=True, slots=True)
class DuePeriod:
    id: UUID
    merchant_id: UUID
    subscription_id: UUID
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class Skip:
    """A period a pass did not invoice, and why (``due_at``: when its grace window ends)."""

    merchant_id: UUID
    subscription_id: UUID
    period_start: datetime
    period_end: datetime
    reason: str
    due_at: datetime | None = None


@dataclass
class CloseSummary:
    invoices_made: int = 0
    total_minor_by_currency: dict[str, int] = field(default_factory=dict)
    subscriptions_rolled: int = 0
    credit_balances_settled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    made: list[invoices.Finalized] = field(default_factory=list)
    """Each invoice made, in the order it was finalized."""
    skips: list[Skip] = field(default_factory=list)
    busy_merchants: list[UUID] = field(default_factory=list)
    """A dry run: merchants whose rows a worker held (previewed on the next run)."""

    def add_invoice(self, invoice: invoices.Finalized) -> None:
        self.invoices_made += 1
        self.made.append(invoice)
        totals = self.total_minor_by_currency
        totals[invoice.currency] = totals.get(invoice.currency, 0) + invoice.total_minor

    def skip(self, period: DuePeriod | Skip, reason: str, due_at: datetime | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skips.append(
            Skip(
                period.merchant_id,
                period.subscription_id,
                period.period_start,
                period.period_end,
                reason,
                due_at,
            )
        )

    def merge(self, other: CloseSummary) -> None:
        for invoice in other.made:
            self.add_invoice(invoice)
        self.subscriptions_rolled += other.subscriptions_rolled
        self.credit_balances_settled += other.credit_balances_settled
        for skip in other.skips:
            self.skip(skip, skip.reason, skip.due_at)
        self.busy_merchants += other.busy_merchants


async def due_periods(
    now: datetime,
    *,
    grace: timedelta,
    merchant_id: UUID | None = None,
    limit: int = 500,
    at: datetime | None = None,
    after: tuple[datetime, UUID] = _FIRST_PAGE,
) -> list[DuePeriod]:
    """Due periods in period order, the first ``limit`` after ``after`` (period start, id)."""
    rows = await reader().fetch(_DUE_PERIODS, now, grace, merchant_id, limit, at, *after)
    return [DuePeriod(**dict(row)) for row in rows]


async def waiting_periods(
    now: datetime,
    *,
    grace: timedelta,
    merchant_id: UUID | None = None,
    limit: int = 1000,
    at: datetime | None = None,
) -> list[Skip]:
    """Ended periods whose grace window for late usage is still open."""
    rows = await reader().fetch(_WAITING_PERIODS, now, grace, merchant_id, limit, at)
    return [
        Skip(
            row["merchant_id"],
            row["subscription_id"],
            row["period_start"],
            row["period_end"],
            IN_GRACE,
            row["due_at"],
        )
        for row in rows
    ]


async def roll_due_subscriptions(
    now: datetime,
    *,
    merchant_id: UUID | None = None,
    limit: int = 500,
    at: datetime | None = None,
) -> int:
    """Bring subscriptions whose period or trial ended up to date (periods end, scheduled
    changes and cancellations apply). Locked rows are someone else's work: skipped."""
    rows = await reader().fetch(_DUE_ROLLS, now, merchant_id, limit, at)
    rolled = 0
    for row in rows:
        async with unit():
            sub = (
                await Subscription.objects()
                .where(Subscription.merchant_id == row["merchant_id"])
                .where(Subscription.id == row["id"])
                .lock_rows("UPDATE", skip_locked=True)
                .first()
            )
            if sub is None:
                continue
            merchant_now = await _merchant_now(sub.merchant_id, now, at)
            rolled += 1 if await lifecycle.roll_forward(sub, now=merchant_now) else 0
    return rolled


async def _merchant_now(
    merchant_id: UUID, system_now: datetime, at: datetime | None = None
) -> datetime:
    """The merchant's now (fixed by a preview, its test clock's, or the system's)."""
    row = await transaction_connection().fetchrow(_MERCHANT_NOW, merchant_id, system_now, at)
    return row["now"] if row else (at or system_now)


_CLAIM_PERIOD = f"""
SELECT sp.merchant_id, sp.subscription_id, sp.period_start, sp.period_end, sp.plan_code,
       sp.plan_version, sp.addons, sp.is_trial, sp.is_final,
       nx.period_start AS next_start, nx.fee_plan_code, nx.fee_plan_version, nx.fee_addons,
       s.currency, s.timezone, s.billing_period, s.billing_anchor,
       {_MERCHANT_TIME.format(at="$3", system="$2")} AS now,
       EXISTS (
           SELECT 1 FROM subscription_periods e
           WHERE e.merchant_id = $4 AND e.period_start < sp.period_start
             AND e.status = 'ended'
             AND NOT EXISTS (
                 SELECT 1 FROM invoices i
                 WHERE i.merchant_id = $4 AND i.subscription_id = e.subscription_id
                   AND i.period_start = e.period_start AND i.kind = 'period')
       ) AS is_after_an_uninvoiced_period
FROM subscription_periods sp
JOIN subscriptions s ON s.merchant_id = sp.merchant_id AND s.id = sp.subscription_id
JOIN merchants m ON m.id = sp.merchant_id
LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
LEFT JOIN subscription_periods nx ON nx.merchant_id = sp.merchant_id
     AND nx.subscription_id = sp.subscription_id AND nx.period_start = sp.period_end
WHERE sp.merchant_id = $4 AND sp.id = $1 AND sp.status = 'ended'
FOR UPDATE OF sp SKIP LOCKED
"""
# A period is invoiced only once every earlier period of its merchant has its invoice
# (``is_after_an_uninvoiced_period``), so numbers, taken at finalize, follow the periods even
# with several workers side by side. Every table, the subqueries' too, is filtered by the
# merchant itself ($4): Citus plans a row lock only for a statement it can send to one shard,
# and it does not carry the merchant through a correlated subquery's join.


async def close_periods(
    periods: Sequence[DuePeriod],
    *,
    system_now: datetime,
    tax_rate: Decimal,
    at: datetime | None = None,
) -> list[tuple[DuePeriod, invoices.Finalized | None, str]]:
    """Close ended periods of different merchants (at most one each) in one transaction: each
    is claimed, rated and written with the others, a few statements for the lot, and each is
    whole or absent, as alone. Returns each period with its invoice, or None and the reason it
    was skipped. When a period turns out to have its invoice already (another worker made it
    between the look and the claim), the lot is rolled back and each is closed alone."""
    if not periods:
        return []
    try:
        return await _close_together(periods, system_now=system_now, tax_rate=tax_rate, at=at)
    except invoices.AlreadyInvoiced:
        if len(periods) == 1:
            return [(periods[0], None, ALREADY_INVOICED)]
    results = []
    for period in periods:
        results += await close_periods([period], system_now=system_now, tax_rate=tax_rate, at=at)
    return results


async def _close_together(
    periods: Sequence[DuePeriod],
    *,
    system_now: datetime,
    tax_rate: Decimal,
    at: datetime | None,
) -> list[tuple[DuePeriod, invoices.Finalized | None, str]]:
    assert len({period.merchant_id for period in periods}) == len(periods)
    results: dict[UUID, tuple[invoices.Finalized | None, str]] = {}
    async with unit():
        connection = transaction_connection()
        # One statement per merchant (a row lock names its merchant), all in one round trip.
        rows = await connection.fetchmany(
            _CLAIM_PERIOD, [(p.id, system_now, at, p.merchant_id) for p in periods]
        )
        claimed_by_merchant = {row["merchant_id"]: row for row in rows}
        claims = []
        for period in periods:
            claimed = claimed_by_merchant.get(period.merchant_id)
            if claimed is None:
                results[period.id] = (None, TAKEN)
            elif claimed["is_after_an_uninvoiced_period"]:
                results[period.id] = (None, AFTER_EARLIER)
            else:
                claims.append((period, claimed))
        if claims:
            facts = await read_facts([claimed for _, claimed in claims])
            closes = [await _draft(claimed, facts, tax_rate=tax_rate) for _, claimed in claims]
            # The numbering's and the foreign keys' look-ups (a new invoice's subscription,
            # a new line's invoice) planned per execution: a connection otherwise keeps the plan
            # it made while those tables were nearly empty (a new installation, a benchmark), a
            # sequential scan that costs more with every invoice until autovacuum analyses them.
            await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            numbers = await numbering.next_numbers([close.new.merchant_id for close in closes])
            made = await invoices.write(
                [close.new for close in closes],
                [numbers[close.new.merchant_id] for close in closes],
            )
            await _after_written(closes, made)
            for (period, _), finalized in zip(claims, made, strict=True):
                results[period.id] = (finalized, "invoiced")
    if not in_preview():
        for invoice, _ in results.values():
            if invoice is not None:
                log.info(
                    "invoice_finalized",
                    invoice_id=str(invoice.id),
                    number=invoice.number,
                    merchant_id=str(invoice.merchant_id),
                    total_minor=invoice.total_minor,
                    currency=invoice.currency,
                )
    return [(period, *results[period.id]) for period in periods]


@dataclass(frozen=True, slots=True)
class _Close:
    """One period's invoice as drafted, and what writing it must also record."""

    new: invoices.NewInvoice
    usage_period: Period
    aggregates: Mapping[str, UsageAggregate]
    is_trial: bool
    late: list[LateUsage]
    line_ids: list[UUID]
    sla_id: UUID | None
    balance_before: int


async def _draft(claimed: Mapping[str, Any], facts: Facts, *, tax_rate: Decimal) -> _Close:
    merchant_id, subscription_id = claimed["merchant_id"], claimed["subscription_id"]
    key = (merchant_id, subscription_id, claimed["period_start"])
    tz = zone(claimed["timezone"])
    now = claimed["now"]
    usage_period = Period(
        claimed["period_start"].astimezone(tz), claimed["period_end"].astimezone(tz)
    )
    usage_plan = await catalog_store.plan_version(claimed["plan_code"], claimed["plan_version"])
    usage_terms = terms(facts, merchant_id, usage_plan, claimed["addons"], claimed["period_end"])
    fee_terms, fee_period = None, None
    # The next period's fees in advance; none after the final period, and none after a trial
    # (the first paid period was billed when the trial ended).
    if not (claimed["is_final"] or claimed["is_trial"]) and claimed["next_start"] is not None:
        fee_plan = await catalog_store.plan_version(
            claimed["fee_plan_code"], claimed["fee_plan_version"]
        )
        fee_terms = terms(
            facts,
            merchant_id,
            fee_plan,
            claimed["fee_addons"],
            claimed["next_start"] + timedelta(microseconds=1),
        )
        fee_period = period_containing(
            claimed["billing_period"],
            claimed["next_start"].astimezone(tz),
            claimed["timezone"],
            claimed["billing_anchor"],
        )
    aggregates = {} if claimed["is_trial"] else facts.aggregates[key]
    # Every line still waiting: those billed at once normally had their own invoice already
    # (the pass makes immediate invoices first); one that could not comes here.
    waiting = (
        await waiting_lines(merchant_id, subscription_id)
        if (merchant_id, subscription_id) in facts.has_waiting_lines
        else []
    )
    late = late_usage(
        facts.usage_vs_billed.get((merchant_id, subscription_id), []),
        before=claimed["period_start"],
        tz=tz,
    )
    sla = facts.sla_reports.get(key)
    sla_report = msgspec.json.decode(sla["report"], type=SlaReport) if sla else None
    # The balance reaches older open invoices first; what is left is this invoice's to take.
    balance = facts.balances[merchant_id]
    if balance:
        balance = await credit_balance.settle(merchant_id, claimed["currency"], now=now)
    draft = drafts.draft(
        usage_terms=usage_terms,
        usage_period=usage_period,
        aggregates=aggregates,
        fee_terms=fee_terms,
        fee_period=fee_period,
        pending=[line for _, line, _ in waiting],
        sla_report=sla_report,
        late_usage=late,
        tax_rate=tax_rate,
        credit_balance_minor=balance,
        sla_billed_share=lifecycle.fee_share(
            usage_period,
            is_trial=claimed["is_trial"],
            billing_period=claimed["billing_period"],
            timezone=claimed["timezone"],
            anchor=claimed["billing_anchor"],
        ),
    )
    new = invoices.NewInvoice(
        merchant_id=merchant_id,
        subscription_id=subscription_id,
        kind="period",
        period_start=claimed["period_start"],
        period_end=claimed["period_end"],
        draft=draft,
        now=now,
    )
    return _Close(
        new=new,
        usage_period=usage_period,
        aggregates=aggregates,
        is_trial=claimed["is_trial"],
        late=late,
        line_ids=[line_id for line_id, _, _ in waiting],
        sla_id=sla["id"] if sla else None,
        balance_before=balance,
    )


async def _after_written(closes: Sequence[_Close], made: Sequence[invoices.Finalized]) -> None:
    """What the new invoices took: waiting lines, usage (as billed), SLA reports, balances."""
    connection = transaction_connection()
    billed = []
    for close, invoice in zip(closes, made, strict=True):
        merchant_id = invoice.merchant_id
        await mark_lines_invoiced(merchant_id, close.line_ids, invoice.id)
        periods = [] if close.is_trial else [(close.usage_period, close.aggregates)]  # free
        periods += [(Period(x.period_start, x.period_end), x.aggregates_after) for x in close.late]
        billed += [(merchant_id, invoice.subscription_id, *period) for period in periods]
        if close.sla_id is not None:
            await connection.execute(
                "UPDATE sla_reports SET invoice_id = $1 WHERE merchant_id = $2 AND id = $3",
                invoice.id,
                merchant_id,
                close.sla_id,
            )
        draft = close.new.draft
        moves_balance = (
            close.balance_before
            or draft.credit_balance_applied_minor
            or draft.credit_balance_carried_forward_minor
        )
        if moves_balance:  # with nothing before, taken or carried, the balance stays at 0
            await balance_after(
                merchant_id,
                invoice.id,
                draft,
                balance_before=close.balance_before,
                now=close.new.now,
            )
    await record_billed(billed)


async def invoice_immediate_lines(
    *,
    system_now: datetime,
    tax_rate: Decimal,
    merchant_id: UUID | None = None,
    limit: int = 500,
    at: datetime | None = None,
) -> list[invoices.Finalized]:
    """Lines a plan bills at once (first-period fees, prorations on some plans) get their own
    invoice now instead of waiting for the period close."""
    made = []
    rows = await reader().fetch(_DUE_IMMEDIATE, merchant_id, limit)
    for row in rows:
        invoice = await _invoice_immediate(
            row["merchant_id"],
            row["subscription_id"],
            system_now=system_now,
            tax_rate=tax_rate,
            at=at,
        )
        if invoice is not None:
            made.append(invoice)
    return made


async def _invoice_immediate(
    merchant_id: UUID,
    subscription_id: UUID,
    *,
    system_now: datetime,
    tax_rate: Decimal,
    at: datetime | None,
) -> invoices.Finalized | None:
    try:
        return await _invoice_immediate_once(
            merchant_id, subscription_id, system_now=system_now, tax_rate=tax_rate, at=at
        )
    except invoices.AlreadyInvoiced:
        return None  # one immediate invoice per start instant; the rest wait for the close


async def _invoice_immediate_once(
    merchant_id: UUID,
    subscription_id: UUID,
    *,
    system_now: datetime,
    tax_rate: Decimal,
    at: datetime | None,
) -> invoices.Finalized | None:
    async with unit():
        rows = await PendingLine.raw(
            "SELECT id, line FROM pending_invoice_lines WHERE merchant_id = {}"
            " AND subscription_id = {} AND invoice_id IS NULL AND is_invoiced_immediately"
            " ORDER BY created_at, id FOR UPDATE SKIP LOCKED",
            merchant_id,
            subscription_id,
        )
        if not rows:
            return None
        sub = await lifecycle.get(merchant_id, subscription_id)
        now = await _merchant_now(merchant_id, system_now, at)
        lines = [msgspec.json.decode(row["line"], type=InvoiceLine) for row in rows]
        tz = zone(sub.timezone)
        start = min(line.period_start for line in lines).astimezone(tz)
        end = max(line.period_end for line in lines).astimezone(tz)
        if end <= start:
            end = start + timedelta(seconds=1)
        terms = await lifecycle.terms_of(sub, now)
        balance = await credit_balance.settle(merchant_id, sub.currency, now=now)
        draft = drafts.draft(
            usage_terms=terms,
            usage_period=Period(start, end),
            aggregates={},
            fee_terms=None,
            fee_period=None,
            pending=lines,
            tax_rate=tax_rate,
            credit_balance_minor=balance,
            bill_usage=False,
        )
        invoice = await invoices.create(
            merchant_id=merchant_id,
            subscription_id=subscription_id,
            kind="immediate",
            period_start=start,
            period_end=end,
            draft=draft,
            now=now,
        )
        await mark_lines_invoiced(merchant_id, [row["id"] for row in rows], invoice.id)
        await balance_after(merchant_id, invoice.id, draft, balance_before=balance, now=now)
    return invoice


async def run_pass(
    *,
    system_now: datetime,
    grace: timedelta,
    tax_rate: Decimal,
    merchant_id: UUID | None = None,
    at: datetime | None = None,
    on_progress: Any = None,
    should_stop: Any = None,
    batch: int = 500,
    chunk: int = 50,
    concurrency: int = 4,
    report_waiting: bool = False,
) -> CloseSummary:
    """One full pass: roll subscriptions forward, invoice immediate lines, close due periods.

    A merchant's periods are closed one after another in period order (so their numbers
    follow the periods); different merchants' together, ``chunk`` periods to a transaction
    (``close_periods``), and a few such batches side by side. ``should_stop`` is asked between
    batches: a worker told to stop finishes the batches it is closing and leaves the rest for
    the next pass. ``at`` fixes the merchant's time (previews);
    ``report_waiting`` lists the periods left in their grace window among the skips."""
    summary = CloseSummary()
    stop = should_stop or (lambda: False)
    if in_preview():
        concurrency = 1  # one connection: the preview's
    slots = asyncio.Semaphore(concurrency)
    while rolled := await roll_due_subscriptions(
        system_now, merchant_id=merchant_id, limit=batch, at=at
    ):
        summary.subscriptions_rolled += rolled
    for invoice in await invoice_immediate_lines(
        system_now=system_now, tax_rate=tax_rate, merchant_id=merchant_id, at=at
    ):
        summary.add_invoice(invoice)
    blocked: set[UUID] = set()  # merchants with a period this pass could not invoice
    after, seen = _FIRST_PAGE, 0
    while not stop():
        due = await due_periods(
            system_now, grace=grace, merchant_id=merchant_id, limit=batch, at=at, after=after
        )
        if not due:
            break
        after = (due[-1].period_start, due[-1].id)
        seen += len(due)
        if on_progress is not None:
            on_progress(total=seen)
        # Round r holds each merchant's r-th period of the page: a round is closed in batches
        # of different merchants, side by side, and the next round only after it, so each
        # merchant's periods are invoiced in period order (and numbered in it).
        rounds: list[list[DuePeriod]] = []
        taken: dict[UUID, int] = {}
        for period in due:
            index = taken.get(period.merchant_id, 0)
            taken[period.merchant_id] = index + 1
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(period)
        for periods in rounds:
            todo = []
            for period in periods:
                if period.merchant_id in blocked:  # the later ones wait for the earlier one
                    summary.skip(period, AFTER_EARLIER)
                    if on_progress is not None:
                        on_progress(advance=1)
                else:
                    todo.append(period)

            async def close_batch(periods: list[DuePeriod]) -> None:
                async with slots:
                    if stop():  # a worker told to stop finishes the batches it began
                        return
                    for period, invoice, reason in await close_periods(
                        periods, system_now=system_now, tax_rate=tax_rate, at=at
                    ):
                        if on_progress is not None:
                            on_progress(advance=1)
                        if invoice is not None:
                            summary.add_invoice(invoice)
                            continue
                        summary.skip(period, reason)
                        if reason != ALREADY_INVOICED:
                            blocked.add(period.merchant_id)

            # A few batches in flight at once, each in its own transaction: the database's
            # round trips overlap instead of adding up.
            await asyncio.gather(
                *(close_batch(todo[i : i + chunk]) for i in range(0, len(todo), chunk))
            )
    summary.credit_balances_settled = await settle_credit_balances(
        system_now=system_now, merchant_id=merchant_id, limit=batch, at=at
    )
    if report_waiting:
        for waiting in await waiting_periods(
            system_now, grace=grace, merchant_id=merchant_id, at=at
        ):
            summary.skip(waiting, IN_GRACE, waiting.due_at)
    return summary


async def settle_credit_balances(
    *,
    system_now: datetime,
    merchant_id: UUID | None = None,
    limit: int = 500,
    at: datetime | None = None,
) -> int:
    """Credit balances that can reach an open invoice, or be refunded, without waiting for an
    invoice to be made (balances from before their movements were recorded, any a close left
    behind), each settled in its own transaction. Returns how many balances went down."""
    rows = await reader().fetch(_DUE_BALANCES, merchant_id, limit)
    settled = 0
    for row in rows:
        async with unit():
            now = await _merchant_now(row["merchant_id"], system_now, at)
            before = await credit_balance.lock(row["merchant_id"], row["currency"])
            after = await credit_balance.settle(row["merchant_id"], row["currency"], now=now)
            settled += after < before
    return settled
