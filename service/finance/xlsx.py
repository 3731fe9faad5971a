"""A streamed XLSX writer for finance exports: the sheet XML is written as the rows come, through
a deflating zip that is itself a stream, so an export of any size holds one batch in memory and
the first bytes leave before the last row is read.

Why our own: a general writer (XlsxWriter, even in its constant-memory mode) spends most of an
export's time in per-cell Python calls, and writes its rows to a temporary file that is zipped
once the sheet is done. Finance exports need only a few cell kinds, so each row becomes one
string here, and the zip entries are written with data descriptors (no seeking back), in a
fixed order with fixed times, so the same data gives the same bytes.

What a cell is, is decided once per column (``CellKind``), never guessed from a value:
- text is always an inline string (``t="inlineStr"``): never a formula, a number or a link,
  whatever it holds. XML's special characters are escaped, control characters become Excel's
  ``_xHHHH_`` escapes (and a literal ``_xHHHH_`` is escaped in turn), text longer than Excel's
  32,767 characters is cut there, and text a spreadsheet would read as a formula (see
  ``is_formula_like``) is also marked quote-prefixed, as Excel marks what a person types after
  ``'``;
- numbers are numbers (money with its currency's decimals), dates and times real Excel dates,
  booleans booleans.

A sheet holds at most ``EXCEL_MAX_ROWS`` rows (Excel's limit, the header included): longer
exports continue on ``<name> (2)``, ``<name> (3)``, ... each with the header, its filter and
its frozen first row.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

EXCEL_MAX_ROWS: Final = 1_048_576
"""Rows in one Excel sheet, at most (the header row counts)."""
EXCEL_MAX_TEXT: Final = 32_767
"""Characters in one Excel cell, at most."""
MAX_SHEET_XML: Final = 3 << 30
"""A sheet's XML is kept under 4 GiB (a zip entry without ZIP64): past this, a new sheet."""
COMPRESS_LEVEL: Final = 1
"""zlib's fastest level: the XML repeats itself, so it still shrinks about tenfold."""
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP, CSV injection)."""

_FIXED_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)
_EXCEL_EPOCH: Final = datetime(1899, 12, 31, tzinfo=UTC)
_DIGIT_WIDTH: Final = 7
_PADDING: Final = 5

_NEEDS_ESCAPING = re.compile("[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9a-fA-F]{4}_")
_LITERAL_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")


def is_formula_like(text: str) -> bool:
    return text.startswith(FORMULA_TRIGGERS)


def escape_text(text: str) -> str:
    """Text as the content of an XML element that Excel reads back as the same text."""
    if len(text) > EXCEL_MAX_TEXT:
        text = text[:EXCEL_MAX_TEXT]
    if _NEEDS_ESCAPING.search(text) is None:
        return text
    text = _LITERAL_ESCAPE.sub(r"_x005F\1", text)
    text = _CONTROL.sub(lambda found: f"_x{ord(found.group()):04X}_", text)
    text = text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#xA;")


def column_letter(index: int) -> str:
    """``0`` → ``A``, ``26`` → ``AA``."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def excel_serial(value: date) -> float:
    """A date or a (naive, local) date-time as Excel's serial number (the 1900 system, with
    its leap-year quirk for days after 1900-02-28)."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC)  # its wall-clock time: Excel has no zones
    else:
        moment = datetime.combine(value, time(), tzinfo=UTC)
    delta = moment - _EXCEL_EPOCH
    serial = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86_400
    return serial + 1 if serial > 59 else serial


def _number(value: Any) -> str:
    return str(value) if type(value) is int else format(value, ".16G")


def excel_width(characters: float) -> float:
    """A width in characters as Excel stores it (XlsxWriter's rounding)."""
    return int((characters * _DIGIT_WIDTH + _PADDING) / _DIGIT_WIDTH * 256) / 256


# -- the cells ---------------------------------------------------------------------------------

TEXT, INT, NUMBER, MONEY, TIMESTAMP, DATE, BOOL = range(7)
CellKind = int
"""A column's kind: one of the constants above."""

_S_HEADING, _S_QUOTED, _S_DATE, _S_TIMESTAMP, _S_INTEGER = 1, 2, 3, 4, 5
_S_MONEY: Final = 6
"""Money styles follow, one per number of decimals in ``money_places``."""


@dataclass(frozen=True)
class SheetSpec:
    """What the export's sheets hold: the header, each column's kind, notes on header cells,
    the currency column (for money's decimals) and the rows of the ``notes`` sheet."""

    name: str
    header: Sequence[str]
    kinds: Sequence[CellKind]
    header_notes: dict[int, str] = field(default_factory=dict)
    currency_column: int | None = None
    money_places: dict[str, int] = field(default_factory=dict)
    default_places: int = 2
    notes: Sequence[tuple[str, str]] = ()
    rows_per_sheet: int = EXCEL_MAX_ROWS - 1
    """Data rows per sheet (the header comes on top of each)."""
    width_sample_rows: int = 2_000
    max_width: int = 50
    minimum_widths: dict[CellKind, int] = field(
        default_factory=lambda: {TIMESTAMP: 20, DATE: 12, BOOL: 8}
    )


def display_width(text: str) -> int:
    """Roughly how many character cells a text takes: a CJK character (three UTF-8 bytes)
    counts two."""
    return len(text) + (len(text.encode()) - len(text)) // 2


class Drain(io.RawIOBase):
    """A write-only file that hands what was written to whoever drains it (it counts what it
    took, for writers that ask where they are, and cannot seek)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = COMPRESS_LEVEL  # type: ignore[attr-defined]  # 3.11 has no public name
    info.external_attr = 0o600 << 16
    return info


class StreamedWorkbook:
    """``start()``, then ``write(rows)`` per batch, then ``finish()``: each returns the next
    bytes of the file."""

    def __init__(self, spec: SheetSpec) -> None:
        if spec.rows_per_sheet < 1:
            raise ValueError("a sheet holds at least one row")
        self.spec = spec
        self.sink = Drain()
        self.archive = zipfile.ZipFile(self.sink, "w", allowZip64=True)
        self.sheet: Any = None
        self.sheet_rows = 0
        self.sheet_bytes = 0
        self.row_count: list[int] = []
        self.widths = [display_width(name) + 3 for name in spec.header]  # + the filter button
        self.measured = 0
        self.letters = [column_letter(i) for i in range(len(spec.header))]
        self.last_letter = self.letters[-1]
        self.encode = self._row_encoder()

    # -- the flow ------------------------------------------------------------------------------

    def write(self, rows: list[list[Any]]) -> bytes:
        if self.measured < self.spec.width_sample_rows:
            self._measure(rows[: self.spec.width_sample_rows - self.measured])
        offset = 0
        while offset < len(rows):
            if (
                self.sheet is None
                or self.sheet_rows >= self.spec.rows_per_sheet
                or (self.sheet_bytes > MAX_SHEET_XML)
            ):
                self._close_sheet()
                self._open_sheet()
            room = self.spec.rows_per_sheet - self.sheet_rows
            take = rows[offset : offset + room]
            first = self.sheet_rows + 2  # row 1 is the header
            encode = self.encode
            xml = "".join([encode(row, first + i) for i, row in enumerate(take)]).encode()
            self.sheet.write(xml)
            self.sheet_rows += len(take)
            self.sheet_bytes += len(xml)
            offset += len(take)
        return self.sink.drain()

    def finish(self) -> bytes:
        if self.sheet is None:
            self._open_sheet()
        self._close_sheet()
        self._write_notes()
        self._write_package()
        self.archive.close()
        return self.sink.drain()

    # -- sheets --------------------------------------------------------------------------------

    def _sheet_name(self, number: int) -> str:
        return self.spec.name if number == 1 else f"{self.spec.name} ({number})"

    def _open_sheet(self) -> None:
        number = len(self.row_count) + 1
        self.sheet = self.archive.open(_entry(f"xl/worksheets/sheet{number}.xml"), "w")
        self.sheet_rows = 0
        columns = "".join(
            f'<col min="{i + 1}" max="{i + 1}" width="{excel_width(self._width(i))}"'
            ' customWidth="1"/>'
            for i in range(len(self.widths))
        )
        heading = "".join(
            f'<c r="{letter}1" s="{_S_HEADING}" t="inlineStr"><is><t>{escape_text(name)}</t>'
            "</is></c>"
            for letter, name in zip(self.letters, self.spec.header, strict=True)
        )
        selected = ' tabSelected="1"' if number == 1 else ""
        head = (
            f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
            f"<sheetViews><sheetView{selected}"
            ' workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft"'
            ' state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{columns}</cols>'
            f'<sheetData><row r="1">{heading}</row>'
        )
        self.sheet.write(head.encode())
        self.sheet_bytes = len(head)

    def _close_sheet(self) -> None:
        if self.sheet is None:
            return
        number = len(self.row_count) + 1
        last_row = self.sheet_rows + 1
        tail = (
            f'</sheetData><autoFilter ref="A1:{self.last_letter}{last_row}"/>'
            '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3"'
            ' footer="0.3"/>' + ('<legacyDrawing r:id="rId1"/>' if self.spec.header_notes else "")
        ) + "</worksheet>"
        self.sheet.write(tail.encode())
        self.sheet.close()
        self.sheet = None
        self.row_count.append(self.sheet_rows)
        if self.spec.header_notes:
            self._write_header_notes(number)

    def _write_header_notes(self, number: int) -> None:
        notes = sorted(self.spec.header_notes.items())
        comments = "".join(
            f'<comment ref="{self.letters[column]}1" authorId="0"><text><r><rPr><sz val="8"/>'
            '<color indexed="81"/><rFont val="Tahoma"/><family val="2"/></rPr>'
            f"<t>{escape_text(text)}</t></r></text></comment>"
            for column, text in notes
        )
        self._put(
            f"xl/comments{number}.xml",
            f'{_XML}<comments xmlns="{_MAIN}"><authors><author></author></authors>'
            f"<commentList>{comments}</commentList></comments>",
        )
        shapes = "".join(
            f'<v:shape id="_x0000_s{1024 * number + index + 1}" type="#_x0000_t202"'
            ' style="position:absolute;margin-left:100pt;margin-top:1.5pt;width:144pt;'
            f'height:55.5pt;z-index:{index + 1};visibility:hidden" fillcolor="#ffffe1"'
            ' o:insetmode="auto"><v:fill color2="#ffffe1"/><v:shadow on="t" color="black"'
            ' obscured="t"/><v:path o:connecttype="none"/><v:textbox'
            ' style="mso-direction-alt:auto"><div style="text-align:left"></div></v:textbox>'
            '<x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/>'
            f"<x:Anchor>{column + 1}, 15, 0, 2, {column + 3}, 15, 4, 16</x:Anchor>"
            "<x:AutoFill>False</x:AutoFill><x:Row>0</x:Row>"
            f"<x:Column>{column}</x:Column></x:ClientData></v:shape>"
            for index, (column, _) in enumerate(notes)
        )
        self._put(
            f"xl/drawings/vmlDrawing{number}.vml",
            '<xml xmlns:v="urn:schemas-microsoft-com:vml"'
            ' xmlns:o="urn:schemas-microsoft-com:office:office"'
            ' xmlns:x="urn:schemas-microsoft-com:office:excel"><o:shapelayout v:ext="edit">'
            f'<o:idmap v:ext="edit" data="{number}"/></o:shapelayout>'
            '<v:shapetype id="_x0000_t202" coordsize="21600,21600" o:spt="202"'
            ' path="m,l,21600r21600,l21600,xe"><v:stroke joinstyle="miter"/>'
            '<v:path gradientshapeok="t" o:connecttype="rect"/></v:shapetype>'
            f"{shapes}</xml>",
        )
        self._put(
            f"xl/worksheets/_rels/sheet{number}.xml.rels",
            _relationships(
                [
                    (f"{_REL}/vmlDrawing", f"../drawings/vmlDrawing{number}.vml"),
                    (f"{_REL}/comments", f"../comments{number}.xml"),
                ]
            ),
        )

    def _write_notes(self) -> None:
        number = len(self.row_count) + 1
        rows = "".join(
            f'<row r="{line}"><c r="A{line}" s="{_S_HEADING}" t="inlineStr"><is><t>'
            f"{escape_text(label)}</t></is></c>"
            f'<c r="B{line}" t="inlineStr"><is><t>{escape_text(value)}</t></is></c></row>'
            for line, (label, value) in enumerate(self.spec.notes, start=1)
        )
        self._put(
            f"xl/worksheets/sheet{number}.xml",
            f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}"><sheetViews><sheetView'
            ' workbookViewId="0"/></sheetViews><sheetFormatPr defaultRowHeight="15"/><cols>'
            f'<col min="1" max="1" width="{excel_width(16)}" customWidth="1"/>'
            f'<col min="2" max="2" width="{excel_width(100)}" customWidth="1"/></cols>'
            f'<sheetData>{rows}</sheetData><pageMargins left="0.7" right="0.7" top="0.75"'
            ' bottom="0.75" header="0.3" footer="0.3"/></worksheet>',
        )

    def _write_package(self) -> None:
        data_sheets = len(self.row_count)
        names = [self._sheet_name(n) for n in range(1, data_sheets + 1)] + ["notes"]
        sheets = "".join(
            f'<sheet name="{_attribute(name)}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in enumerate(names, start=1)
        )
        filters = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n - 1}" hidden="1">'
            f"{escape_text(_quoted_sheet(self._sheet_name(n)))}!$A$1:${self.last_letter}$"
            f"{rows + 1}</definedName>"
            for n, rows in enumerate(self.row_count, start=1)
        )
        self._put(
            "xl/workbook.xml",
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><workbookPr/><bookViews>'
            f'<workbookView xWindow="240" yWindow="15" windowWidth="16095"'
            f' windowHeight="9660"/></bookViews><sheets>{sheets}</sheets>'
            f'<definedNames>{filters}</definedNames><calcPr calcId="124519"/></workbook>',
        )
        parts = [
            (f"{_REL}/worksheet", f"worksheets/sheet{n}.xml") for n in range(1, len(names) + 1)
        ]
        self._put(
            "xl/_rels/workbook.xml.rels", _relationships([*parts, (f"{_REL}/styles", "styles.xml")])
        )
        self._put("xl/styles.xml", self._styles())
        self._put(
            "docProps/core.xml",
            f"{_XML}<cp:coreProperties xmlns:cp={_CP!r} xmlns:dc={_DC!r}"
            ' xmlns:dcterms="http://purl.org/dc/terms/"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>Kefu Billing'
            '</dc:creator><dcterms:created xsi:type="dcterms:W3CDTF">2000-01-01T00:00:00Z'
            "</dcterms:created></cp:coreProperties>",
        )
        self._put(
            "_rels/.rels",
            _relationships(
                [
                    (f"{_REL}/officeDocument", "xl/workbook.xml"),
                    (f"{_PACKAGE_REL}/metadata/core-properties", "docProps/core.xml"),
                ]
            ),
        )
        overrides = [
            ("/xl/workbook.xml", f"{_SHEET_TYPES}.sheet.main+xml"),
            ("/xl/styles.xml", f"{_SHEET_TYPES}.styles+xml"),
            ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
        ]
        overrides += [
            (f"/xl/worksheets/sheet{n}.xml", f"{_SHEET_TYPES}.worksheet+xml")
            for n in range(1, len(names) + 1)
        ]
        if self.spec.header_notes:
            overrides += [
                (f"/xl/comments{n}.xml", f"{_SHEET_TYPES}.comments+xml")
                for n in range(1, data_sheets + 1)
            ]
        self._put(
            "[Content_Types].xml",
            f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels"'
            ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Default Extension="vml"'
            ' ContentType="application/vnd.openxmlformats-officedocument.vmlDrawing"/>'
            + "".join(
                f'<Override PartName="{part}" ContentType="{kind}"/>' for part, kind in overrides
            )
            + "</Types>",
        )

    def _styles(self) -> str:
        places = sorted(set(self.spec.money_places.values()) | {self.spec.default_places})
        money_formats = ["#,##0" + ("." + "0" * p if p else "") for p in places]
        formats = ["yyyy-mm-dd", "yyyy-mm-dd hh:mm:ss", *money_formats]
        numbers = "".join(
            f'<numFmt numFmtId="{164 + i}" formatCode="{code}"/>' for i, code in enumerate(formats)
        )
        plain = 'fontId="0" fillId="0" borderId="0" xfId="0"'
        cells = [
            f'<xf numFmtId="0" {plain}/>',
            '<xf numFmtId="0" fontId="1" fillId="0" borderId="1" xfId="0" applyFont="1"'
            ' applyBorder="1"/>',
            f'<xf numFmtId="0" {plain} quotePrefix="1"/>',
            f'<xf numFmtId="164" {plain} applyNumberFormat="1"/>',
            f'<xf numFmtId="165" {plain} applyNumberFormat="1"/>',
            f'<xf numFmtId="1" {plain} applyNumberFormat="1"/>',
            *(
                f'<xf numFmtId="{166 + i}" {plain} applyNumberFormat="1"/>'
                for i in range(len(places))
            ),
        ]
        return (
            f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="{len(formats)}">{numbers}'
            '</numFmts><fonts count="2"><font><sz val="11"/><name val="Calibri"/>'
            '<family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/>'
            '<family val="2"/></font></fonts><fills count="2"><fill><patternFill'
            ' patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
            '</fills><borders count="2"><border><left/><right/><top/><bottom/><diagonal/>'
            '</border><border><left/><right/><top/><bottom style="thin"><color auto="1"/>'
            '</bottom><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0"'
            ' fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            f'<cellXfs count="{len(cells)}">{"".join(cells)}</cellXfs><cellStyles count="1">'
            '<cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
        )

    def _put(self, name: str, text: str) -> None:
        self.archive.writestr(_entry(name), text.encode())

    # -- rows ----------------------------------------------------------------------------------

    def _width(self, column: int) -> int:
        floor = self.spec.minimum_widths.get(self.spec.kinds[column], 0)
        return max(self.widths[column], floor)

    def _measure(self, rows: list[list[Any]]) -> None:
        """Columns fit the header and the first rows (measuring every row of a large export
        would cost more than it tells)."""
        widths, limit = self.widths, self.spec.max_width
        for row in rows:
            for column, (kind, value) in enumerate(zip(self.spec.kinds, row, strict=True)):
                if value is None:
                    continue
                if kind == TEXT:
                    width = min(display_width(str(value)) + 1, limit)
                elif kind == MONEY:
                    width = min(len(f"{value:,}") + 2, limit)
                elif kind == INT:
                    width = len(str(value)) + 2
                elif kind == NUMBER:
                    width = min(len(format(value, "f")) + 2, limit)
                else:
                    continue
                if width > widths[column]:
                    widths[column] = width
        self.measured += len(rows)

    def _row_encoder(self) -> Callable[[list[Any], int], str]:
        spec = self.spec
        letters = self.letters
        kinds = list(spec.kinds)
        currency_column = spec.currency_column
        places = sorted(set(spec.money_places.values()) | {spec.default_places})
        money_style = {p: _S_MONEY + i for i, p in enumerate(places)}
        currency_style = {code: money_style[p] for code, p in spec.money_places.items()}
        default_money = money_style[spec.default_places]
        serials: dict[Any, str] = {}
        needs_escaping = _NEEDS_ESCAPING.search
        columns = list(zip(range(len(kinds)), letters, kinds, strict=True))

        def serial(value: date) -> str:
            found = serials.get(value)
            if found is None:
                if len(serials) > 4_096:
                    serials.clear()
                found = serials[value] = format(excel_serial(value), ".16G")
            return found

        def encode(row: list[Any], number: int) -> str:
            n = str(number)
            money = (
                currency_style.get(row[currency_column], default_money)
                if currency_column is not None
                else default_money
            )
            cells = [f'<row r="{n}">']
            add = cells.append
            for column, letter, kind in columns:
                value = row[column]
                if value is None:
                    continue
                if kind == TEXT:
                    text = value if type(value) is str else str(value)
                    if not text:
                        continue
                    style = f' s="{_S_QUOTED}"' if text.startswith(FORMULA_TRIGGERS) else ""
                    if len(text) > EXCEL_MAX_TEXT or needs_escaping(text) is not None:
                        text = escape_text(text)
                    space = (
                        ' xml:space="preserve"' if text[0].isspace() or text[-1].isspace() else ""
                    )
                    add(
                        f'<c r="{letter}{n}"{style} t="inlineStr"><is><t{space}>{text}</t></is></c>'
                    )
                elif kind == MONEY:
                    add(f'<c r="{letter}{n}" s="{money}"><v>{_number(value)}</v></c>')
                elif kind == INT:
                    add(f'<c r="{letter}{n}" s="{_S_INTEGER}"><v>{_number(value)}</v></c>')
                elif kind == TIMESTAMP:
                    add(f'<c r="{letter}{n}" s="{_S_TIMESTAMP}"><v>{serial(value)}</v></c>')
                elif kind == DATE:
                    add(f'<c r="{letter}{n}" s="{_S_DATE}"><v>{serial(value)}</v></c>')
                elif kind == BOOL:
                    add(f'<c r="{letter}{n}" t="b"><v>{1 if value else 0}</v></c>')
                else:
                    add(f'<c r="{letter}{n}"><v>{_number(value)}</v></c>')
            add("</row>")
            return "".join(cells)

        return encode


def _quoted_sheet(name: str) -> str:
    """A sheet name as a formula reference takes it (``'usage (2)'``)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "'" + name.replace("'", "''") + "'"


def _relationships(targets: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<Relationship Id="rId{n}" Type="{kind}" Target="{target}"/>'
        for n, (kind, target) in enumerate(targets, start=1)
    )
    return f'{_XML}<Relationships xmlns="{_PACKAGE_REL}">{items}</Relationships>'


_XML: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_SHEET_TYPES: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_CP: Final = "http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
_DC: Final = "http://purl.org/dc/elements/1.1/"
