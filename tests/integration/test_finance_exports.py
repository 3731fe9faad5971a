"""Finance exports: hand-worked rows, identical bytes twice, standard readers round-trip the
amounts exactly, bounded memory, and operators only."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
import tracemalloc
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest
from httpx import AsyncClient

from service.db.engine import current
from service.finance import exports
from tests.integration.conftest import Tenant, make_tenant
from tests.integration.finance_helpers import Book, build_book, download


@pytest.fixture(scope="module")
async def book(client: AsyncClient, operator: Tenant) -> Book:
    return await build_book(client, operator)


async def _numbers(merchant_id: uuid.UUID, *sequence: int) -> list[str]:
    """The merchant's invoice numbers ``KB-<its prefix>-<n>``."""
    prefix = await current().pool.fetchval(
        "SELECT prefix FROM invoice_number_prefixes WHERE merchant_id = $1", merchant_id
    )
    return [f"KB-{prefix}-{n:06d}" for n in sequence]


def _csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


async def test_invoice_register_of_a_known_month(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    content, headers = await download(client, operator, "invoices",
                                      merchant_id=str(book.d.merchant_id))  # fmt: skip
    assert headers["content-type"].startswith("text/csv")
    assert 'filename="invoices-2026-03-01-2026-04-30-' in headers["content-disposition"]
    rows = _csv_rows(content)
    picked = [
        (r["accounting_date"], r["number"], r["merchant_name"], r["tier"], r["kind"],
         r["status"], r["subtotal"], r["total"], r["total_minor"], r["amount_paid"],
         r["finalized_at"])
        for r in rows
    ]  # fmt: skip
    # The close pass on 04-03 (the clock's time) finalized the signup invoice (March's fee)
    # and March's: 20,000 × ¥0.20 + (¥350,000 − ¥100,000) × 0.30% + April's fee ¥1,200.
    first, second = await _numbers(book.d.merchant_id, 1, 2)
    assert picked == [
        ("2026-04-03", first, "丁 Shop D", "custom", "immediate", "open",
         "1200.00", "1200.00", "120000", "0.00", "2026-04-03T00:00:00+08:00"),
        ("2026-04-03", second, "丁 Shop D", "custom", "period", "open",
         "5950.00", "5950.00", "595000", "0.00", "2026-04-03T00:00:00+08:00"),
    ]  # fmt: skip
    assert rows[1]["period_start"] == "2026-03-01T00:00:00+08:00"
    assert rows[1]["period_end"] == "2026-04-01T00:00:00+08:00"
    # Outside the range: nothing.
    empty, _ = await download(client, operator, "invoices", merchant_id=str(book.d.merchant_id),
                              **{"from": "2026-03-01", "to": "2026-04-02"})  # fmt: skip
    assert _csv_rows(empty) == []


async def test_lines_usage_and_revenue_exports(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    merchant = {"merchant_id": str(book.d.merchant_id)}
    lines = _csv_rows((await download(client, operator, "invoice_lines", **merchant))[0])
    first, second = await _numbers(book.d.merchant_id, 1, 2)
    assert [(r["invoice_number"], r["charge_type"], r["amount"], r["quantity"]) for r in lines
            if r["amount_minor"] != "0"] == [
        (first, "fees", "1200.00", "1"),
        (second, "per_order", "4000.00", "20000"),
        (second, "gmv_share", "750.00", "250000.00"),
        (second, "fees", "1200.00", "1"),
    ]  # fmt: skip
    usage = _csv_rows((await download(client, operator, "usage", **merchant))[0])
    assert [(r["accounting_date"], r["tier"], r["order_events"], r["orders"], r["gmv"],
             r["gmv_minor"], r["hours"]) for r in usage] == [
        ("2026-03-01", "custom", "20", "20000", "350000.00", "35000000", "0"),
    ]  # fmt: skip
    billed = _csv_rows((await download(client, operator, "revenue", **merchant))[0])
    assert [(r["month"], r["charge_type"], r["amount"]) for r in billed
            if r["amount_minor"] != "0"] == [
        ("2026-04", "fees", "2400.00"), ("2026-04", "gmv_share", "750.00"),
        ("2026-04", "per_order", "4000.00"),
    ]  # fmt: skip
    mrr = _csv_rows((await download(client, operator, "mrr", **merchant))[0])
    assert [(r["month"], r["tier"], r["mrr"], r["new"]) for r in mrr] == [
        ("2026-03", "custom", "1200.00", "1200.00"), ("2026-04", "custom", "1200.00", "0.00"),
    ]  # fmt: skip


@pytest.mark.parametrize("export_format", ["csv", "parquet", "xlsx"])
async def test_the_same_export_twice_gives_identical_bytes(
    client: AsyncClient, operator: Tenant, book: Book, export_format: str
) -> None:
    for kind in ("invoices", "invoice_lines"):
        first, _ = await download(client, operator, kind, format=export_format)
        second, _ = await download(client, operator, kind, format=export_format)
        assert first == second
        assert len(first) > 0


async def test_each_format_round_trips_the_amounts_exactly(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    merchant = {"merchant_id": str(book.d.merchant_id)}
    expected = [(Decimal("1200.00"), 120000), (Decimal("5950.00"), 595000)]

    parquet, headers = await download(client, operator, "invoices", format="parquet", **merchant)
    assert headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet))
    assert str(table.schema.field("total").type) == "decimal128(22, 3)"
    assert str(table.schema.field("total_minor").type) == "int64"
    assert list(zip(table.column("total").to_pylist(), table.column("total_minor").to_pylist(),
                    strict=True)) == expected  # fmt: skip
    assert table.column("merchant_name").to_pylist() == ["丁 Shop D", "丁 Shop D"]

    xlsx, _ = await download(client, operator, "invoices", format="xlsx", **merchant)
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx), read_only=True)["invoices"]
    header, *rows = list(sheet.values)
    total, total_minor = header.index("total"), header.index("total_minor")
    assert [(Decimal(str(r[total])), r[total_minor]) for r in rows] == expected
    assert isinstance(rows[0][total_minor], int)

    csv_bytes, _ = await download(client, operator, "invoices", bom="true", **merchant)
    assert csv_bytes.startswith("\ufeff".encode())
    assert [(Decimal(r["total"]), int(r["total_minor"])) for r in _csv_rows(csv_bytes)] == expected


async def test_a_merchant_key_reaches_no_finance_route(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    for url in ("/v1/finance/exports/invoices?from=2026-03-01&to=2026-03-31",
                "/v1/finance/mrr?on=2026-03-31", "/v1/finance/summary?month=2026-03"):  # fmt: skip
        refused = await client.get(url, headers=book.a.headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    unknown = await client.get("/v1/finance/exports/ledger?from=2026-03-01&to=2026-03-31",
                               headers=operator.headers)  # fmt: skip
    assert unknown.status_code == 404
    backwards = await client.get("/v1/finance/exports/invoices?from=2026-03-02&to=2026-03-01",
                                 headers=operator.headers)  # fmt: skip
    assert backwards.status_code in (400, 422)


async def test_figures_api_matches_the_hand_worked_mrr(
    client: AsyncClient, operator: Tenant, book: Book
) -> None:
    params = {"on": "2026-03-31", "merchant_id": str(book.a.merchant_id), "include_test": "1"}
    response = await client.get("/v1/finance/mrr", headers=operator.headers, params=params)
    assert response.status_code == 200, response.text
    assert response.json()["tiers"] == [
        {"tier": "basic", "currency": "CNY", "mrr_minor": 9900, "mrr": "99.00", "subscriptions": 1}
    ]


@pytest.mark.parametrize("export_format", [exports.ExportFormat.CSV, exports.ExportFormat.XLSX])
async def test_an_export_streams_in_bounded_memory(
    database: object, export_format: exports.ExportFormat
) -> None:
    """100,000 usage rows (≈ 17 MB of CSV) stream with a Python heap peak of a batch or two,
    in CSV and in XLSX (its sheet XML is deflated into the zip as it is written)."""
    tenant = await make_tenant(f"内存 bounded shop {export_format}")
    subscription_id = uuid.uuid4()
    pool = current().pool
    await pool.execute(
        "INSERT INTO subscriptions (id, merchant_id, plan_code, plan_version, status, currency,"
        " timezone, billing_period, billing_anchor, current_period_start, current_period_end,"
        " started_at) VALUES ($1, $2, 'basic', 1, 'canceled', 'CNY', 'Asia/Shanghai',"
        " 'calendar_month', '2026-01-01', '2026-01-01', '2026-02-01', '2026-01-01')",
        subscription_id, tenant.merchant_id,
    )  # fmt: skip
    rows = 100_000
    await pool.execute(
        "INSERT INTO usage_aggregates (merchant_id, subscription_id, period_start, metric,"
        " event_count, quantity, gmv_minor)"
        " SELECT $1, $2, timestamptz '2026-01-01 00:00+08' + g * interval '1 minute', 'orders',"
        " g, g, g * 1000 FROM generate_series(1, $3) g",
        tenant.merchant_id, subscription_id, rows,
    )  # fmt: skip

    async def export(last_day: date) -> tuple[int, int, int]:
        """(rows, bytes, Python heap peak) of the usage export up to ``last_day``."""
        request = exports.ExportRequest(
            kind=exports.ExportKind.USAGE, first_day=date(2026, 1, 1), last_day=last_day,
            merchant_id=tenant.merchant_id, format=export_format,
        )  # fmt: skip
        counted = written = 0

        def on_rows(n: int) -> None:
            nonlocal counted
            counted += n

        tracemalloc.start()
        try:
            async for chunk in exports.stream(request, on_rows=on_rows):
                written += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return counted, written, peak

    small = await export(date(2026, 1, 7))  # the first 6 days: 10,080 rows
    large = await export(date(2026, 3, 31))  # all of them
    assert (small[0], large[0]) == (10_080 - 1, rows)
    assert large[1] > 9 * small[1]
    # Ten times the rows, about the same peak: memory follows the batch, not the export.
    assert large[2] < 1.5 * small[2], (small, large)
    if export_format is exports.ExportFormat.CSV:  # XLSX deflates to far less than its XML
        assert large[2] < large[1] / 3, large


async def test_an_xlsx_export_past_the_sheet_limit_continues_on_more_sheets(
    client: AsyncClient, operator: Tenant, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Excel holds 1,048,576 rows a sheet: past ``XLSX_ROWS_PER_SHEET`` data rows (lowered
    here) an export goes on in ``<kind> (2)``, ... each with the header, every row once."""
    whole, _ = await download(client, operator, "invoice_lines", format="xlsx")
    expected = list(openpyxl.load_workbook(io.BytesIO(whole))["invoice_lines"].values)
    assert len(expected) > 5
    monkeypatch.setattr(exports, "XLSX_ROWS_PER_SHEET", 2)
    split, _ = await download(client, operator, "invoice_lines", format="xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(split))
    sheets = -(-(len(expected) - 1) // 2)
    assert workbook.sheetnames == [
        "invoice_lines",
        *(f"invoice_lines ({n})" for n in range(2, sheets + 1)),
        "notes",
    ]
    rows = []
    for name in workbook.sheetnames[:-1]:
        header, *data = workbook[name].values
        assert header == expected[0]
        assert 1 <= len(data) <= 2
        assert workbook[name].freeze_panes == "A2"
        rows += data
    assert rows == expected[1:]


async def test_billing_export_command_writes_the_same_bytes_as_the_api(
    client: AsyncClient, operator: Tenant, book: Book, database_dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "invoices.xlsx"
    billing = str(Path(sys.executable).parent / "billing")
    env = {**os.environ, "DATABASE_URL": database_dsn, "BILLING_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        billing, "export", "invoices", "--from", "2026-03-01", "--to", "2026-04-30",
        "--format", "xlsx", "--merchant", str(book.d.merchant_id), "--include-test",
        "--out", str(out),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "2 rows" in output.decode()
    api, _ = await download(client, operator, "invoices", format="xlsx",
                            merchant_id=str(book.d.merchant_id))  # fmt: skip
    assert out.read_bytes() == api
