"""``billing close-periods --dry-run`` is the close pass itself, rolled back: it lists the
invoices the real pass then makes, line by line, and the periods it skips with the same
reasons; it moves nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from httpx import AsyncClient

from service.db.engine import current as current_database
from service.invoicing import close, close_report, preview
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import INVOICE_FIELDS, LINE_FIELDS, advance, new_clock

GRACE = timedelta(hours=48)


def _view(drafted: preview.Drafted) -> dict[str, Any]:
    row = drafted.invoice
    return {
        "merchant_id": row.merchant_id,
        "status": row.status,
        **{name: getattr(row, name) for name in INVOICE_FIELDS},
        "lines": [{name: line[name] for name in LINE_FIELDS} for line in drafted.lines],
    }


def _skips(summary: close.CloseSummary) -> list[tuple[Any, ...]]:
    return [(s.merchant_id, s.period_start, s.reason, s.due_at) for s in summary.skips]


async def _four_merchants(client: AsyncClient, operator: Tenant) -> list[Tenant]:
    clock = await new_clock(client, operator, "2026-01-01T00:00:00+08:00")
    a, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock, name="A")
    await advance(client, operator, clock, "2026-02-10T00:00:00+08:00")
    b, _ = await signup_tenant(
        client, operator, plan="advanced", trial_days=14, test_clock_id=clock, name="B"
    )
    c, _ = await signup_tenant(client, operator, plan="custom", test_clock_id=clock, name="C")
    d, d_sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock, name="D")
    report = await client.post(
        "/v1/sla-reports",
        json={"merchant_id": str(c.merchant_id), "period_start": "2026-02-10T00:00:00+08:00",
              "csat": "0.7"},
        headers=operator.headers,
    )  # fmt: skip
    assert report.status_code == 201, report.text
    await advance(client, operator, clock, "2026-02-20T00:00:00+08:00")
    canceled = await client.post(
        f"/v1/subscriptions/{d_sub['id']}/cancel",
        json={"at_period_end": False},
        headers=d.headers,
    )
    assert canceled.status_code == 200, canceled.text
    # A: January due, February in its grace window, March's fee at once; B: the trial ended
    # Feb 24 (due), its first (short) period in grace; C: February in grace; D: canceled on
    # Feb 20, its last period due, the unused fee credited.
    await advance(client, operator, clock, "2026-03-02T12:00:00+08:00")
    return [a, b, c, d]


async def test_the_dry_run_lists_what_the_real_pass_then_makes_and_skips(
    client: AsyncClient, operator: Tenant
) -> None:
    tenants = await _four_merchants(client, operator)
    now = datetime.now(UTC)
    count = "SELECT count(*) FROM invoices WHERE merchant_id = $1"
    for tenant in tenants:
        dry, drafted = await preview.dry_run(
            system_now=now, grace=GRACE, tax_rate=Decimal(0), merchant_id=tenant.merchant_id
        )
        assert await current_database().pool.fetchval(count, tenant.merchant_id) == 0
        real = await close.run_pass(
            system_now=now,
            grace=GRACE,
            tax_rate=Decimal(0),
            merchant_id=tenant.merchant_id,
            report_waiting=True,
        )
        made = await preview.read_back(real.made)
        assert [_view(d) for d in drafted] == [_view(m) for m in made]
        assert made, "each merchant has something to invoice"
        assert _skips(dry) == _skips(real)
        assert dry.total_minor_by_currency == real.total_minor_by_currency
        assert dry.credit_balances_settled == real.credit_balances_settled


async def test_the_dry_run_changes_nothing_and_says_why_it_skips(
    client: AsyncClient, operator: Tenant
) -> None:
    tenants = await _four_merchants(client, operator)
    ids = [t.merchant_id for t in tenants]
    footprint = """
        SELECT (SELECT count(*) FROM invoices WHERE merchant_id = ANY($1::uuid[])),
               (SELECT count(*) FROM credit_notes WHERE merchant_id = ANY($1::uuid[])),
               (SELECT count(*) FROM credit_balance_movements
                WHERE merchant_id = ANY($1::uuid[])),
               (SELECT count(*) FROM stripe_outbox WHERE merchant_id = ANY($1::uuid[]))
    """
    before = await current_database().pool.fetchrow(footprint, ids)
    reports = [
        await close_report.close_periods(
            system_now=datetime.now(UTC),
            grace=GRACE,
            tax_rate=Decimal(0),
            merchant_id=merchant_id,
            dry_run=True,
        )
        for merchant_id in ids
    ]
    assert await current_database().pool.fetchrow(footprint, ids) == before
    text = "\n".join(line for report in reports for line in close_report.render(report))
    assert "would make" in text
    # A's February: closed once its grace window for late usage ends, named in its zone.
    assert (
        "  A  2026-02-01 00:00 – 2026-03-01 00:00 Asia/Shanghai: in the grace window for late"
        " usage until 2026-03-03 00:00 Asia/Shanghai"
    ) in text
    assert "(numbered when made)  D  period  2026-02-10 00:00 – 2026-02-20 00:00" in text
