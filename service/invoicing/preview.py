"""Previews of the period close: the upcoming invoices, a change quote's next invoices, and the
close's dry run. Each is the close itself (``service.invoicing.close.run_pass``) run on the
recorded facts — usage, SLA reports, trials, first-period fees, waiting prorations, late usage,
the credit balance — inside a transaction that is rolled back (``simulation.rolled_back``): the
invoices are read back as the close wrote them, then undone. Nothing is kept, not even the
credit balance a preview shows being applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from plans.catalog import PlanVersion
from service.db.tables import Invoice
from service.errors import ConcurrentChange
from service.invoicing import close, invoices
from service.invoicing.simulation import reader, rolled_back
from service.subscriptions import lifecycle
from service.tenancy.principal import Actor


@dataclass(frozen=True, slots=True)
class Drafted:
    """An invoice as the close wrote it: its row and its lines, in position order."""

    invoice: Invoice
    lines: list[dict[str, Any]]


async def read_back(made: Sequence[invoices.Finalized]) -> list[Drafted]:
    """The rows the close wrote for these invoices (inside a preview: before the rollback)."""
    drafted = []
    for finalized in made:
        row = (
            await Invoice.objects()
            .where(Invoice.merchant_id == finalized.merchant_id)
            .where(Invoice.id == finalized.id)
            .first()
        )
        assert row is not None, "an invoice the close reported is missing"
        drafted.append(Drafted(row, await invoices.lines(finalized.merchant_id, finalized.id)))
    return drafted


# The latest end among the merchant's periods without their invoice: the open period's, or
# (nothing open) the last ended one still in its grace window.
_LAST_UNINVOICED_END = """
SELECT max(sp.period_end) FROM subscription_periods sp
WHERE sp.merchant_id = $1
  AND NOT EXISTS (
      SELECT 1 FROM invoices i
      WHERE i.merchant_id = sp.merchant_id AND i.subscription_id = sp.subscription_id
        AND i.period_start = sp.period_start AND i.kind = 'period')
"""


async def upcoming(
    merchant_id: UUID, *, now: datetime, grace: timedelta, tax_rate: Decimal
) -> list[Drafted]:
    """The invoices the close will make next, in the order it makes them: what is due now (an
    immediate invoice waiting, ended periods past their grace window), then everything up to
    and including the invoice of the period open now, made at its end plus the grace window
    (a trial's end and its first period's fee included). Usage is what is recorded now."""
    async with rolled_back():
        return await _next_invoices(merchant_id, now=now, grace=grace, tax_rate=tax_rate)


async def quote_change(
    merchant_scope: UUID | None,
    subscription_id: UUID,
    *,
    new_plan: PlanVersion,
    new_addons: list[str] | None,
    when: str,
    now: datetime,
    grace: timedelta,
    tax_rate: Decimal,
    actor: Actor,
) -> tuple[lifecycle.ChangePlan, list[Drafted]]:
    """A plan or add-on change made as the API would make it, and the invoices the close would
    make after it (``upcoming``), all rolled back."""
    async with rolled_back():
        sub = await lifecycle.lock_for_change(merchant_scope, subscription_id)
        await lifecycle.roll_forward(sub, now=now)
        change = await lifecycle.plan_change(
            sub, new_plan=new_plan, new_addons=new_addons, when=when, now=now
        )
        await lifecycle.apply_change(sub, change, actor=actor, now=now)
        made = await _next_invoices(sub.merchant_id, now=now, grace=grace, tax_rate=tax_rate)
    return change, made


async def _next_invoices(
    merchant_id: UUID, *, now: datetime, grace: timedelta, tax_rate: Decimal
) -> list[Drafted]:
    made = await close.run_pass(
        system_now=now, at=now, grace=grace, tax_rate=tax_rate, merchant_id=merchant_id
    )
    last_end = await reader().fetchval(_LAST_UNINVOICED_END, merchant_id)
    if last_end is not None and last_end + grace > now:
        horizon = last_end + grace
        later = await close.run_pass(
            system_now=horizon, at=horizon, grace=grace, tax_rate=tax_rate, merchant_id=merchant_id
        )
        made.merge(later)
    return await read_back(made.made)


# Merchants a pass has something to do for, or to report: a subscription to bring up to date,
# an immediate line, an ended period without its invoice, a credit balance.
_MERCHANTS_WITH_WORK = """
SELECT merchant_id FROM (
    SELECT s.merchant_id FROM subscriptions s
    JOIN merchants m ON m.id = s.merchant_id
    LEFT JOIN test_clocks tc ON tc.id = m.test_clock_id
    WHERE s.status <> 'canceled'
      AND (s.current_period_end <= coalesce(tc.frozen_time, $1)
           OR (s.status = 'trialing' AND s.trial_end <= coalesce(tc.frozen_time, $1)))
    UNION
    SELECT merchant_id FROM pending_invoice_lines WHERE invoice_id IS NULL
    UNION
    SELECT sp.merchant_id FROM subscription_periods sp
    WHERE sp.status = 'ended' AND NOT EXISTS (
        SELECT 1 FROM invoices i
        WHERE i.merchant_id = sp.merchant_id AND i.subscription_id = sp.subscription_id
          AND i.period_start = sp.period_start AND i.kind = 'period')
    UNION
    SELECT merchant_id FROM credit_balances WHERE balance_minor > 0
) work
WHERE $2::uuid IS NULL OR merchant_id = $2
ORDER BY merchant_id
"""


async def dry_run(
    *,
    system_now: datetime,
    grace: timedelta,
    tax_rate: Decimal,
    merchant_id: UUID | None = None,
    on_progress: Callable[..., None] | None = None,
) -> tuple[close.CloseSummary, list[Drafted]]:
    """What a close pass at ``system_now`` would do — the invoices it would make, what it would
    skip and why — one merchant at a time, each in a preview of its own (a whole pass in one
    transaction would hold every merchant's rows at once)."""
    merchants = [
        row["merchant_id"]
        for row in await reader().fetch(_MERCHANTS_WITH_WORK, system_now, merchant_id)
    ]
    if on_progress is not None:
        on_progress(total=len(merchants))
    summary = close.CloseSummary()
    drafted: list[Drafted] = []
    for merchant in merchants:
        try:
            async with rolled_back():
                one = await close.run_pass(
                    system_now=system_now,
                    grace=grace,
                    tax_rate=tax_rate,
                    merchant_id=merchant,
                    report_waiting=True,
                )
                drafted += await read_back(one.made)
            summary.merge(one)
        except ConcurrentChange:
            summary.busy_merchants.append(merchant)
        if on_progress is not None:
            on_progress(advance=1)
    return summary, drafted
