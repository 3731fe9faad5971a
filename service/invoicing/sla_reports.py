"""SLA reports: a merchant's service figures for one period. Before the period's invoice they
become credit lines on it; after it was finalized, a credit note against it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec

from plans.periods import Period, zone
from plans.rating import recurring_lines
from plans.sla import FaultRecord, SlaReport, sla_credit_lines
from service.catalog import store as catalog_store
from service.db.tables import Invoice, SlaReportRow, SubscriptionPeriod
from service.errors import Conflict, InvalidInput, NotFound
from service.invoicing import credit_notes
from service.subscriptions import lifecycle


async def submit(
    merchant_id: UUID,
    period_start: datetime,
    *,
    faults: Sequence[FaultRecord],
    csat: Decimal | None,
    first_response_seconds: Decimal | None,
    first_contact_resolution: Decimal | None,
    share_over_sla: Decimal | None,
    now: datetime,
) -> tuple[SlaReportRow, UUID | None]:
    """Store the report; returns it and the credit note made when the period is invoiced."""
    sub = await lifecycle.live_subscription(merchant_id) or await _latest_subscription(merchant_id)
    period_row = (
        await SubscriptionPeriod.objects()
        .where(SubscriptionPeriod.merchant_id == merchant_id)
        .where(SubscriptionPeriod.subscription_id == sub.id)
        .where(SubscriptionPeriod.period_start == period_start)
        .first()
    )
    if period_row is None:
        raise InvalidInput(
            "period_start must be the start of one of the subscription's billing periods",
            field="period_start",
        )
    tz = zone(sub.timezone)
    period = Period(period_row.period_start.astimezone(tz), period_row.period_end.astimezone(tz))
    try:
        report = SlaReport(
            period_start=period.start,
            period_end=period.end,
            faults=tuple(faults),
            csat=csat,
            first_response_seconds=first_response_seconds,
            first_contact_resolution=first_contact_resolution,
            share_over_sla=share_over_sla,
        )
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    rows = await SlaReportRow.raw(
        "INSERT INTO sla_reports (merchant_id, subscription_id, period_start, period_end,"
        " report, received_at) VALUES ({}, {}, {}, {}, {}::jsonb, {})"
        " ON CONFLICT (merchant_id, subscription_id, period_start) DO NOTHING RETURNING id",
        merchant_id,
        sub.id,
        period.start,
        period.end,
        msgspec.json.encode(report).decode(),
        now,
    )
    if not rows:
        raise Conflict("this period already has an SLA report")
    row = await SlaReportRow.objects().where(SlaReportRow.id == rows[0]["id"]).first()
    assert row is not None
    invoice = (
        await Invoice.objects()
        .where(Invoice.merchant_id == merchant_id)
        .where(Invoice.subscription_id == sub.id)
        .where(Invoice.period_start == period_row.period_start)
        .where(Invoice.kind == "period")
        .first()
    )
    if invoice is None:
        return row, None  # the period close will turn it into credit lines
    plan = await catalog_store.plan_version(period_row.plan_code, period_row.plan_version)
    terms = lifecycle.resolve(plan, list(period_row.addons), None)
    if terms.sla_policy is None:
        return row, None
    fee_base = sum(line.amount_minor for line in recurring_lines(terms, period))
    share = lifecycle.fee_share(
        period,
        is_trial=period_row.is_trial,
        billing_period=sub.billing_period,
        timezone=sub.timezone,
        anchor=sub.billing_anchor,
    )
    credit = -sum(
        line.amount_minor
        for line in sla_credit_lines(
            report,
            terms.sla_policy,
            fee_base_minor=fee_base,
            currency=terms.currency,
            billed_share=share,
        )
    )
    if credit <= 0:
        return row, None
    room = invoice.total_minor - invoice.amount_credited_minor
    if room <= 0 or invoice.status not in ("open", "paid"):
        return row, None
    note, _ = await credit_notes.issue(
        merchant_id,
        invoice.id,
        amount_minor=min(credit, room),
        reason=credit_notes.Reason.SLA_CREDIT,
        memo=f"SLA credit for {period.label}",
        now=now,
    )
    row.credit_note_id = note.id
    await row.save([SlaReportRow.credit_note_id])
    return row, note.id


async def _latest_subscription(merchant_id: UUID) -> object:
    from service.db.tables import Subscription

    sub = (
        await Subscription.objects()
        .where(Subscription.merchant_id == merchant_id)
        .order_by(Subscription.created_at, ascending=False)
        .first()
    )
    if sub is None:
        raise NotFound(f"merchant {merchant_id} has no subscription")
    return sub
