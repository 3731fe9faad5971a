# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Files finance does not trip on: XLSX with money formats, real dates, a frozen and filtered
header, widths and the zone said; Parquet with date and zoned timestamp types; each money
movement once in the refunds export; lines filed under the tier that priced them; test
merchants marked and left out of the figures unless asked for."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pyarrow.parquet as pq
import pytest
from httpx import AsyncClient

from service.db.tables import Payment, Refund
from service.finance import revenue
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, invoices_of, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_objects,
    stripe_settings,
    sync,
)

NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30", "include_test": "true"}


async def _export(client: AsyncClient, operator: Tenant, kind: str, **params: Any) -> Any:
    response = await client.get(
        f"/v1/finance/exports/{kind}", params=params, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return response


def _rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


@pytest.fixture(scope="module")
async def upgraded(client: AsyncClient, operator: Tenant) -> Tenant:
    """丙 upgrades basic → advanced on 16 Nov 14:37: the invoice the advanced plan makes at once
    credits basic's unused time and charges advanced for the rest of November."""
    clock = await new_clock(client, operator, "2026-11-01T00:00:00+08:00")
    tenant, sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock,
                                      name="丙 Upgrade Shop")  # fmt: skip
    await close_pass(tenant.merchant_id)
    await advance(client, operator, clock, "2026-11-16T14:37:00+08:00")
    changed = await client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                json={"plan": "advanced"}, headers=tenant.headers)  # fmt: skip
    assert changed.status_code == 200, changed.text
    await close_pass(tenant.merchant_id)
    return tenant


async def test_each_line_is_filed_under_the_tier_that_priced_it(
    client: AsyncClient, operator: Tenant, upgraded: Tenant
) -> None:
    merchant = {"merchant_id": str(upgraded.merchant_id)}
    lines = _rows(
        (await _export(client, operator, "invoice_lines", **NOVEMBER, **merchant)).content
    )
    picked = [(r["invoice_number"], r["description"], r["tier"], r["amount"]) for r in lines]
    first, upgrade = sorted({r["invoice_number"] for r in lines})
    assert picked == [
        (first, "Basic monthly service fee", "basic", "99.00"),
        (upgrade, "Basic monthly service fee (basic v1, unused time)", "basic", "-47.49"),
        (upgrade, "Advanced monthly service fee (advanced v1, remaining time)", "advanced",
         "143.91"),
    ]  # fmt: skip
    # The upgrade's invoice itself is the advanced plan's.
    invoices = _rows((await _export(client, operator, "invoices", **NOVEMBER, **merchant)).content)
    assert [r["tier"] for r in invoices] == ["basic", "advanced"]
    # Revenue by tier sums the lines the same way: basic's credit is basic's.
    revenue_rows = _rows(
        (await _export(client, operator, "revenue", **NOVEMBER, **merchant)).content
    )
    assert sorted((r["tier"], r["charge_type"], r["amount"]) for r in revenue_rows) == [
        ("advanced", "proration", "143.91"),
        ("basic", "fees", "99.00"),
        ("basic", "proration", "-47.49"),
    ]


async def test_xlsx_cells_are_typed_formatted_frozen_filtered_and_sized(
    client: AsyncClient, operator: Tenant, upgraded: Tenant
) -> None:
    merchant = {"merchant_id": str(upgraded.merchant_id)}
    content = (await _export(client, operator, "invoices", format="xlsx", **NOVEMBER,
                             **merchant)).content  # fmt: skip
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    assert workbook.sheetnames == ["invoices", "notes"]
    sheet = workbook["invoices"]
    header = [cell.value for cell in sheet[1]]
    column = {name: index + 1 for index, name in enumerate(header)}
    assert sheet.freeze_panes == "A2"  # the header stays in view
    last = openpyxl.utils.get_column_letter(len(header))
    assert sheet.auto_filter.ref == f"A1:{last}3"  # a filter over the header and both rows
    first = 2
    # Money in the currency's two decimals (¥99.00 shows as 99.00, never 99), minor units whole.
    total = sheet.cell(first, column["total"])
    assert (total.value, total.number_format) == (99, "#,##0.00")
    assert sheet.cell(first, column["total_minor"]).number_format == "0"
    # A real date, and real date-times in the export's zone, which the header says.
    accounting = sheet.cell(first, column["accounting_date"])
    assert (accounting.value, accounting.number_format) == (datetime(2026, 11, 1), "yyyy-mm-dd")
    finalized = sheet.cell(first, column["finalized_at"])
    assert finalized.is_date
    assert finalized.value == datetime(2026, 11, 1)
    assert "Asia/Shanghai" in sheet.cell(1, column["finalized_at"]).comment.text
    assert sheet.cell(first, column["is_test"]).value is True
    # Every column is sized to its header at least; names get room for what they hold.
    for name, index in column.items():
        width = sheet.column_dimensions[openpyxl.utils.get_column_letter(index)].width
        assert width >= len(name) + 1, (name, width)
    name_width = sheet.column_dimensions[openpyxl.utils.get_column_letter(
        column["merchant_name"])].width  # fmt: skip
    assert name_width >= len("丙 Upgrade Shop") + 1
    notes = {row[0]: row[1] for row in workbook["notes"].iter_rows(values_only=True)}
    assert notes["time zone"] == "Asia/Shanghai"
    assert notes["test data"].startswith("included")


async def test_parquet_has_dates_zoned_timestamps_and_booleans(
    client: AsyncClient, operator: Tenant, upgraded: Tenant
) -> None:
    content = (await _export(client, operator, "invoices", format="parquet", **NOVEMBER,
                             merchant_id=str(upgraded.merchant_id))).content  # fmt: skip
    table = pq.read_table(io.BytesIO(content))
    assert str(table.schema.field("accounting_date").type) == "date32[day]"
    assert str(table.schema.field("finalized_at").type) == "timestamp[us, tz=Asia/Shanghai]"
    assert str(table.schema.field("is_test").type) == "bool"
    assert table.column("accounting_date").to_pylist() == [date(2026, 11, 1), date(2026, 11, 16)]
    paid = await _export(client, operator, "payments", format="parquet", **NOVEMBER)
    assert str(pq.read_table(io.BytesIO(paid.content)).schema.field("accounting_date").type) == (
        "date32[day]"
    )


async def test_test_merchants_are_marked_and_left_out_of_figures_unless_asked(
    client: AsyncClient, operator: Tenant, upgraded: Tenant
) -> None:
    live, _ = await signup_tenant(client, operator, plan="advanced", name="真 Live Shop")
    await close_pass(live.merchant_id)  # its first fee, on the wall clock
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    span = {"from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat()}  # fmt: skip
    default = _rows((await _export(client, operator, "invoices", **span)).content)
    assert {r["merchant_name"] for r in default} >= {"真 Live Shop"}
    assert all(r["is_test"] == "false" for r in default)
    november = _rows((await _export(client, operator, "invoices", **{
        "from": "2026-11-01", "to": "2026-11-30"})).content)  # fmt: skip
    assert "丙 Upgrade Shop" not in {r["merchant_name"] for r in november}
    with_test = _rows((await _export(client, operator, "invoices", **NOVEMBER)).content)
    assert {r["is_test"] for r in with_test if r["merchant_name"] == "丙 Upgrade Shop"} == {"true"}

    # MRR leaves test merchants out unless asked: the upgraded merchant's advanced ¥300 counts
    # only with include_test.
    on = {"on": "2026-11-30", "merchant_id": str(upgraded.merchant_id)}
    left_out = await client.get("/v1/finance/mrr", params=on, headers=operator.headers)
    assert left_out.json()["tiers"] == []
    counted = await client.get("/v1/finance/mrr", params={**on, "include_test": "true"},
                               headers=operator.headers)  # fmt: skip
    assert [(t["tier"], t["mrr_minor"]) for t in counted.json()["tiers"]] == [("advanced", 30000)]
    live_mrr = await revenue.mrr_on(today, "Asia/Shanghai", live.merchant_id)
    assert [(t.tier, t.mrr_minor) for t in live_mrr] == [("advanced", 30000)]
    summary = await client.get("/v1/finance/summary", params={"month": "2026-11"},
                               headers=operator.headers)  # fmt: skip
    with_tests = await client.get("/v1/finance/summary",
                                  params={"month": "2026-11", "include_test": "true"},
                                  headers=operator.headers)  # fmt: skip
    billed = {s["currency"]: s["billed_minor"] for s in summary.json()}
    billed_all = {s["currency"]: s["billed_minor"] for s in with_tests.json()}
    assert billed_all.get("CNY", 0) - billed.get("CNY", 0) >= 9900 + 9642  # 丙's two invoices


async def test_a_credit_on_an_open_invoice_is_one_movement_that_refunds_nothing(
    client: AsyncClient, operator: Tenant, upgraded: Tenant
) -> None:
    invoice = (await invoices_of(client, upgraded))[-1]
    credited = await client.post(f"/v1/invoices/{invoice['id']}/credit-notes",
                                 json={"amount_minor": 1000, "reason": "goodwill", "memo": "x"},
                                 headers=operator.headers)  # fmt: skip
    assert credited.status_code == 201, credited.text
    rows = _rows((await _export(client, operator, "refunds", **{
        "from": "2026-11-01", "to": "2026-11-30", "include_test": "true",
        "merchant_id": str(upgraded.merchant_id)})).content)  # fmt: skip
    assert [(r["credit_note"], r["movement"], r["credited"], r["refunded"], r["refund_status"])
            for r in rows] == [
        (credited.json()["number"], "credit", "10.00", "0.00", "none"),
    ]  # fmt: skip


async def test_a_refund_and_its_credit_note_are_one_movement_and_sum_to_what_left(
    stripe_client: AsyncClient, operator: Tenant, sync: Sync
) -> None:
    """The issue's case: a ¥120 credit note refunded through Stripe was two ¥120 rows (the
    credit note and the refund), so the column summed to ¥240. A refund made in the Stripe
    dashboard (which records its own credit note) is one row too."""
    clock = await new_clock(stripe_client, operator, "2026-10-10T00:00:00+08:00")
    tenant, _ = await signup_tenant(stripe_client, operator, plan="advanced", test_clock_id=clock,
                                    name="退款 Refund Shop")  # fmt: skip
    await add_card(sync, tenant.merchant_id)  # so that Stripe charges it
    await close_pass(tenant.merchant_id)
    await sync.settle()
    (invoice,) = await invoices_of(stripe_client, tenant)
    assert invoice["status"] == "paid"
    note = await stripe_client.post(f"/v1/invoices/{invoice['id']}/credit-notes",
                                    json={"amount_minor": 12000, "reason": "sla_credit",
                                          "memo": "outage"}, headers=operator.headers)  # fmt: skip
    assert note.status_code == 201, note.text
    await sync.settle()
    (payment,) = await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)
    intent = sync.standin.sdk_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    sync.standin.dashboard.refund_charge(intent.latest_charge, amount=1000)
    await sync.settle()

    # A dashboard refund is dated by Stripe's (the wall) clock, the rest by the test clock.
    until = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    span = {"from": "2026-10-01", "to": max(until, date(2026, 10, 31)).isoformat(),
            "include_test": "true", "merchant_id": str(tenant.merchant_id)}  # fmt: skip
    rows = _rows((await _export(stripe_client, operator, "refunds", **span)).content)
    stored = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert len(rows) == len(stored) == 2  # one row per movement, not one per document
    by_reason = {r["reason"]: r for r in rows}
    ours = {r.origin: r for r in stored}
    assert (by_reason["sla_credit"]["credit_note"], by_reason["sla_credit"]["stripe_refund_id"],
            by_reason["sla_credit"]["refunded"]) == (
        note.json()["number"], ours["credit_note"].stripe_refund_id, "120.00")  # fmt: skip
    assert (
        by_reason["stripe_refund"]["stripe_refund_id"] == ours["stripe_dashboard"].stripe_refund_id
    )
    assert by_reason["stripe_refund"]["credit_note"]  # the credit note it was recorded with
    # Summing the refunds column gives the money that left, as Stripe has it.
    charges = {c["id"] for c in sync.standin.objects("charge")
               if c.get("payment_intent") == payment.stripe_payment_intent_id}  # fmt: skip
    in_stripe = sum(r["amount"] for r in sync.standin.objects("refund") if r["charge"] in charges)
    assert sum(Decimal(r["refunded"]) for r in rows) == Decimal(in_stripe) / 100 == Decimal(130)
    assert sum(int(r["refunded_minor"]) for r in rows) == in_stripe

    # Payments carry the Stripe charge id the sync stored for them.
    paid = _rows((await _export(stripe_client, operator, "payments", **span)).content)
    assert [(r["amount"], r["stripe_charge_id"]) for r in paid] == [
        (str(Decimal(invoice["total_minor"]).scaleb(-2)), intent.latest_charge)
    ]
    assert payment.stripe_charge_id == intent.latest_charge
