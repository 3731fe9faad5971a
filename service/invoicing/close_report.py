"""``billing close-periods``: one close pass, or its dry run, and what it tells people.

The dry run is the pass itself, run per merchant in a transaction that is rolled back
(``service.invoicing.preview.dry_run``), so both print the same invoices — merchant, kind,
period, total — and the same skips, each with its reason; times are in the merchant's zone,
named. Only the numbers differ: a dry run has none to give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from uuid import UUID

from plans.money import format_minor
from plans.periods import zone
from service.db.engine import current as current_database
from service.invoicing import close, preview

SKIPS_SHOWN: Final = 50


@dataclass(frozen=True, slots=True)
class Report:
    is_dry_run: bool
    summary: close.CloseSummary
    invoices: list[preview.Drafted]
    merchants: dict[UUID, tuple[str, str]]
    """Merchant id → (name, time zone) of every merchant named in the report."""


async def close_periods(
    *,
    system_now: datetime,
    grace: timedelta,
    tax_rate: Decimal,
    merchant_id: UUID | None = None,
    dry_run: bool = False,
    on_progress: Callable[..., None] | None = None,
) -> Report:
    if dry_run:
        summary, drafted = await preview.dry_run(
            system_now=system_now,
            grace=grace,
            tax_rate=tax_rate,
            merchant_id=merchant_id,
            on_progress=on_progress,
        )
    else:
        summary = await close.run_pass(
            system_now=system_now,
            grace=grace,
            tax_rate=tax_rate,
            merchant_id=merchant_id,
            on_progress=on_progress,
            report_waiting=True,
        )
        drafted = await preview.read_back(summary.made)
    named = {d.invoice.merchant_id for d in drafted} | {s.merchant_id for s in summary.skips}
    named |= set(summary.busy_merchants)
    rows = await current_database().pool.fetch(
        "SELECT id, name, timezone FROM merchants WHERE id = ANY($1::uuid[])", list(named)
    )
    merchants = {row["id"]: (row["name"], row["timezone"]) for row in rows}
    return Report(dry_run, summary, drafted, merchants)


def render(report: Report) -> list[str]:
    """The report as lines of plain text (never markup: merchant names are anyone's text)."""
    summary = report.summary
    out = [f"{'would make' if report.is_dry_run else 'made'} {len(report.invoices)} invoice(s)"]
    for drafted in report.invoices:
        invoice = drafted.invoice
        name, tz = report.merchants.get(invoice.merchant_id, (str(invoice.merchant_id), "UTC"))
        number = "(numbered when made)" if report.is_dry_run else invoice.number
        out.append(
            f"  {number}  {name}  {invoice.kind}  "
            f"{span(invoice.period_start, invoice.period_end, tz)}  "
            f"{format_minor(invoice.total_minor, invoice.currency)}"
        )
    for currency, total in sorted(summary.total_minor_by_currency.items()):
        out.append(f"  total {format_minor(total, currency)}")
    if summary.subscriptions_rolled:
        out.append(f"subscriptions brought up to date: {summary.subscriptions_rolled}")
    if summary.credit_balances_settled:
        out.append(f"credit balances settled: {summary.credit_balances_settled}")
    if summary.skips:
        out.append(f"skipped {len(summary.skips)} period(s):")
    for skip in summary.skips[:SKIPS_SHOWN]:
        name, tz = report.merchants.get(skip.merchant_id, (str(skip.merchant_id), "UTC"))
        reason = skip.reason
        if skip.due_at is not None:
            reason += f" until {moment(skip.due_at, tz)}"
        out.append(f"  {name}  {span(skip.period_start, skip.period_end, tz)}: {reason}")
    if len(summary.skips) > SKIPS_SHOWN:
        out.append(f"  … and {len(summary.skips) - SKIPS_SHOWN} more; by reason:")
        out.extend(f"    {reason}: {count}" for reason, count in sorted(summary.skipped.items()))
    for merchant in summary.busy_merchants:
        name, _ = report.merchants.get(merchant, (str(merchant), "UTC"))
        out.append(f"  {name}: a worker holds its rows right now; run the dry run again")
    return out


def moment(instant: datetime, tz: str) -> str:
    """An instant for people: wall time in the merchant's zone, and the zone's name."""
    return f"{instant.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}"


def span(start: datetime, end: datetime, tz: str) -> str:
    local = zone(tz)
    return f"{start.astimezone(local):%Y-%m-%d %H:%M} – {end.astimezone(local):%Y-%m-%d %H:%M} {tz}"
