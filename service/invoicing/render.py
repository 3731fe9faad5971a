"""The invoice as a document: a self-contained HTML page (no external assets)."""

from __future__ import annotations

from html import escape
from typing import Any

from plans.money import format_minor
from plans.periods import zone
from service.db.tables import CreditNote, Invoice, Merchant

_STYLE = """
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:2rem;
color:#1d2430}
h1{font-size:1.4rem;margin:0}.muted{color:#667085}table{border-collapse:collapse;width:100%;
margin-top:1.5rem}th,td{padding:.45rem .6rem;border-bottom:1px solid #e4e7ec;text-align:left;
vertical-align:top}td.amount,th.amount{text-align:right;white-space:nowrap}
.totals td{border:none}.totals .grand td{font-weight:700;border-top:2px solid #1d2430}
.status{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#eef2f6}
"""


def invoice_html(
    invoice: Invoice, lines: list[dict[str, Any]], merchant: Merchant, notes: list[CreditNote]
) -> str:
    tz = zone(merchant.timezone)
    money = lambda minor: escape(format_minor(minor, invoice.currency))  # noqa: E731
    start = invoice.period_start.astimezone(tz)
    end = invoice.period_end.astimezone(tz)
    rows = "\n".join(
        f"<tr><td>{escape(line['description'])}<div class='muted'>"
        f"{escape(line['explanation'])}</div></td>"
        f"<td>{line['period_start'].astimezone(tz):%Y-%m-%d} – "
        f"{line['period_end'].astimezone(tz):%Y-%m-%d}</td>"
        f"<td class='amount'>{money(line['amount_minor'])}</td></tr>"
        for line in lines
    )
    note_rows = "".join(
        f"<tr><td>Credit note {escape(n.number)} ({escape(n.reason)})</td><td></td>"
        f"<td class='amount'>−{money(n.amount_minor)}</td></tr>"
        for n in notes
    )
    issued = f"{invoice.finalized_at.astimezone(tz):%Y-%m-%d}" if invoice.finalized_at else "-"
    tax_percent = f"{invoice.tax_rate * 100:.2f}".rstrip("0").rstrip(".")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>Invoice {escape(invoice.number or "draft")}</title><style>{_STYLE}</style></head>
<body>
<h1>Invoice {escape(invoice.number or "(draft)")}
 <span class="status">{escape(invoice.status)}</span></h1>
<p class="muted">Kefu Billing</p>
<p><strong>{escape(merchant.name)}</strong><br>{escape(merchant.contact_email)}</p>
<p>Period {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} ({escape(merchant.timezone)})<br>
Plan {escape(invoice.plan_code)} v{invoice.plan_version}<br>
Issued {issued}</p>
<table><thead><tr><th>Item</th><th>Covers</th><th class="amount">Amount</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<table class="totals"><tbody>
<tr><td>Subtotal</td><td class="amount">{money(invoice.subtotal_minor)}</td></tr>
<tr><td>Discounts</td><td class="amount">{money(invoice.discounts_minor)}</td></tr>
<tr><td>Credits</td><td class="amount">{money(invoice.credits_minor)}</td></tr>
<tr><td>Tax ({tax_percent}%)</td><td class="amount">{money(invoice.tax_minor)}</td></tr>
<tr class="grand"><td>Total</td><td class="amount">{money(invoice.total_minor)}</td></tr>
{note_rows}
<tr><td>Paid</td><td class="amount">{money(invoice.amount_paid_minor)}</td></tr>
<tr class="grand"><td>Amount due</td><td class="amount">{money(invoice.amount_due_minor)}</td></tr>
</tbody></table>
</body></html>
"""
