"""The invoice document as a self-contained HTML page (no script, no external assets), from the
one document model (`service.invoicing.document`); the PDF renders the same model."""

from __future__ import annotations

from html import escape

from service.html import CJK_FONT_FACE, CJK_FONTS
from service.invoicing.document import InvoiceDocument

_STYLE = (
    CJK_FONT_FACE
    + "body{font-family:"
    + CJK_FONTS
    + """,system-ui,-apple-system,sans-serif;margin:0;background:#f5f7fa;color:#1d2430}
.sheet{max-width:860px;margin:24px auto;background:#fff;border:1px solid #e4e7ec;
border-radius:6px;padding:32px 40px}
h1{font-size:1.5rem;margin:0}.muted{color:#667085}
.top{display:flex;justify-content:space-between;gap:24px;align-items:flex-start}
.parties{display:flex;gap:24px;margin-top:24px}.parties>div{flex:1;min-width:0}
.parties h2,.facts h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;
color:#667085;margin:0 0 .3rem}
.parties p{margin:0;overflow-wrap:anywhere}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:24px 0 0}
dl.facts dt{color:#667085}dl.facts dd{margin:0}
table{border-collapse:collapse;width:100%;margin-top:1.5rem}
th,td{padding:.45rem .6rem;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
td.amount,th.amount{text-align:right;white-space:nowrap}td.covers{white-space:nowrap}
td .muted{font-size:.9em;overflow-wrap:anywhere}
.totals{width:auto;margin-left:auto}.totals td{border:none;padding:.25rem .6rem}
.totals .grand td{font-weight:700;border-top:2px solid #1d2430}
.status{display:inline-block;padding:.15rem .6rem;border-radius:.3rem;background:#eef2f6;
font-size:.9rem;margin-top:.4rem}
.status.open{background:#fff4e5}.status.paid{background:#e7f6ec}.status.void{background:#f2f4f7}
.pay{margin-top:24px;padding:16px;border:1px solid #b2ccff;border-radius:6px;background:#f5f8ff}
.pay a{font-weight:700;font-size:1.05rem}
@media print{body{background:#fff}.sheet{border:none;margin:0;max-width:none}}
"""
)


def invoice_html(document: InvoiceDocument, *, pdf_href: str | None = None) -> str:
    """The page; ``pdf_href`` links the same invoice as PDF (relative to the page)."""
    seller = document.seller
    seller_lines = "".join(
        f"<br>{escape(line)}"
        for line in (
            *seller.address,
            f"Tax ID {seller.tax_id}" if seller.tax_id else "",
            seller.email,
        )
        if line
    )
    name, *others = document.buyer
    buyer = f"<strong>{escape(name)}</strong>" + "".join(f"<br>{escape(o)}" for o in others)
    download = (
        f'<a id="pdf" href="{escape(pdf_href)}">Download PDF</a>' if pdf_href is not None else ""
    )
    facts = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in document.facts
    )
    rows = "\n".join(
        f"<tr><td>{escape(line.description)}<div class='muted'>{escape(line.explanation)}</div>"
        f"</td><td class='covers'>{escape(line.covers)}</td>"
        f"<td class='amount'>{escape(line.amount)}</td></tr>"
        for line in document.lines
    )
    totals = "\n".join(
        f"<tr{' class=grand' if row.is_grand else ''}><td>{escape(row.label)}</td>"
        f"<td class='amount'>{escape(row.amount)}</td></tr>"
        for row in document.totals
    )
    payment = document.payment
    pay = (
        f'<div class="pay" id="payment"><a href="{escape(payment.url)}" rel="noopener noreferrer">'
        f"{escape(payment.label)}</a><div class='muted'>{escape(payment.note)}</div></div>"
        if payment is not None
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(document.title)}</title><style>{_STYLE}</style></head>
<body><main class="sheet">
<div class="top"><div><h1>{escape(document.title)}</h1>
<span class="status {escape(document.status)}" id="status">{escape(document.status_words)}</span>
</div><div>{download}</div></div>
<div class="parties">
<div id="seller"><h2>From</h2><p><strong>{escape(seller.legal_name)}</strong>{seller_lines}</p>
</div>
<div id="buyer"><h2>Bill to</h2><p>{buyer}</p></div>
</div>
<dl class="facts">{facts}</dl>
{pay}
<table id="lines"><thead><tr><th>Item</th><th>Covers</th><th class="amount">Amount</th></tr>
</thead><tbody>
{rows}
</tbody></table>
<table class="totals" id="totals"><tbody>
{totals}
</tbody></table>
</main></body></html>
"""
