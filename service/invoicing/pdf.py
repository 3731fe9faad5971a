"""The invoice document as PDF (A4), from the same model as the HTML page
(`service.invoicing.document`), drawn by fpdf2 with the vendored Noto Sans SC (merchant names
are Chinese; see ``fonts/README.md``). Only the glyphs used are embedded, with a ToUnicode map,
so the text can be searched, copied and extracted.

fpdf2 is imported when a PDF is made, not when the service starts (``billing --help`` stays
light); making one takes a fraction of a second of CPU, so callers run it off the event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from service.invoicing.document import InvoiceDocument

FONT_FILE: Final = Path(__file__).parent / "fonts" / "NotoSansSC-Regular.ttf"
FONT: Final = "NotoSansSC"
_INK: Final = (29, 36, 48)
_MUTED: Final = (102, 112, 133)
_RULE: Final = (228, 231, 236)
_FIXED_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)

# fontTools reports every glyph it keeps when fpdf2 subsets the font, at INFO: not news.
logging.getLogger("fontTools").setLevel(logging.WARNING)


def invoice_pdf(document: InvoiceDocument) -> bytes:
    """The PDF's bytes. The same document gives the same bytes (its dates come from the
    invoice, never from now)."""
    from fpdf import FPDF
    from fpdf.enums import TextMode, XPos, YPos

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_font(FONT, "", str(FONT_FILE))
    pdf.set_title(document.title)
    pdf.set_author(document.seller.legal_name)
    pdf.set_creator("Kefu Billing")
    pdf.set_creation_date(document.issued_at or _FIXED_TIME)
    pdf.set_lang("zh-CN")
    pdf.add_page()
    width = pdf.epw

    def text(size: float, colour: tuple[int, int, int] = _INK, *, bold: bool = False) -> None:
        pdf.set_font(FONT, size=size)
        pdf.set_text_color(*colour)
        # One weight is vendored: strong text is drawn filled and outlined.
        pdf.text_mode = TextMode.FILL_STROKE if bold else TextMode.FILL
        pdf.set_draw_color(*colour)
        pdf.set_line_width(0.18 if bold else 0.2)

    def line_break(height: float = 2) -> None:
        pdf.ln(height)

    # Title and status.
    text(18, bold=True)
    pdf.cell(width * 0.6, 9, document.title, new_x=XPos.RIGHT, new_y=YPos.TOP)
    text(11, bold=True)
    pdf.cell(width * 0.4, 9, document.status_words, align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    line_break(4)

    # Seller and buyer, side by side.
    seller = document.seller
    seller_lines = [
        *seller.address,
        f"Tax ID {seller.tax_id}" if seller.tax_id else "",
        seller.email,
    ]
    top = pdf.get_y()
    column = width / 2 - 4
    _party(pdf, text, "FROM", seller.legal_name, [x for x in seller_lines if x], column)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + width / 2 + 4, top)
    name, *others = document.buyer
    _party(pdf, text, "BILL TO", name, others, column, x=pdf.l_margin + width / 2 + 4)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)

    # Facts: issued, period, zone, plan.
    for label, value in document.facts:
        text(9, _MUTED)
        pdf.cell(32, 5.5, label, new_x=XPos.RIGHT, new_y=YPos.TOP)
        text(9.5)
        pdf.multi_cell(width - 32, 5.5, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    line_break(3)

    # How to pay.
    if document.payment is not None:
        text(11, (47, 111, 222), bold=True)
        pdf.cell(width, 7, document.payment.label, link=document.payment.url,
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        text(8.5, _MUTED)
        pdf.multi_cell(width, 4.5, f"{document.payment.note}: {document.payment.url}",
                       align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        line_break(3)

    # Lines.
    _lines_table(pdf, text, document, width)
    line_break(3)

    # Totals, right-aligned; a long label (a credit note's) wraps beside its amount.
    label_width, amount_width = 96.0, 34.0
    left = pdf.l_margin + width - label_width - amount_width
    for row in document.totals:
        if row.is_grand:
            pdf.set_draw_color(*_INK)
            pdf.set_line_width(0.4)
            pdf.line(left, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        text(9.5, bold=row.is_grand)
        top = pdf.get_y()
        pdf.set_x(left)
        pdf.multi_cell(label_width, 5.5, row.label, align="L",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        bottom = pdf.get_y()
        pdf.set_xy(left + label_width, top)
        pdf.cell(amount_width, 5.5, row.amount, align="R")
        pdf.set_y(bottom)
    line_break(6)
    text(8, _MUTED)
    pdf.multi_cell(
        width,
        4,
        f"Every date and time on this invoice is in {document.timezone}. "
        f"Issued by {seller.legal_name}.",
        align="L",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    return bytes(pdf.output())


def _party(
    pdf: Any, text: Any, heading: str, name: str, lines: list[str], width: float,
    x: float | None = None,
) -> None:  # fmt: skip
    from fpdf.enums import XPos, YPos

    left = pdf.l_margin if x is None else x
    text(8, _MUTED)
    pdf.set_x(left)
    pdf.cell(width, 5, heading, new_x=XPos.LEFT, new_y=YPos.NEXT)
    text(11, bold=True)
    pdf.set_x(left)
    pdf.multi_cell(width, 6, name, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
    text(9.5)
    for line in lines:
        pdf.set_x(left)
        pdf.multi_cell(width, 5, line, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)


def _lines_table(pdf: Any, text: Any, document: InvoiceDocument, width: float) -> None:
    from fpdf.fonts import FontFace

    text(9)
    pdf.set_draw_color(*_RULE)
    pdf.set_line_width(0.2)
    with pdf.table(
        col_widths=(width * 0.58, width * 0.24, width * 0.18),
        text_align=("LEFT", "LEFT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=FontFace(color=_MUTED, size_pt=8.5),
        line_height=4.6,
        padding=(1.6, 1.2, 1.6, 1.2),
        first_row_as_headings=True,
    ) as table:
        heading = table.row()
        for title in ("Item", "Covers", "Amount"):
            heading.cell(title)
        for line in document.lines:
            row = table.row()
            row.cell(f"{line.description}\n{line.explanation}")
            row.cell(line.covers)
            row.cell(line.amount)
