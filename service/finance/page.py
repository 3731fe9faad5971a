"""The finance page as HTML: MRR by tier over time (a server-drawn SVG chart), the month's
invoices by status, billed against collected, the latest reconciliation, and every export.

Self-contained: inline CSS, no script, nothing loaded from elsewhere. Figures come from
``service.finance.revenue``, the module the API and the exports read too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Final

from plans.money import format_minor
from service.finance import revenue
from service.finance.exports import ExportFormat, ExportKind
from service.html import CJK_FONT_FACE, CJK_FONTS

TIER_COLOURS: Final = {"basic": "#4e79a7", "advanced": "#f28e2b", "custom": "#59a14f"}
PAGE_CSS: Final = (
    CJK_FONT_FACE
    + "body{font:14px/1.45 "
    + CJK_FONTS
    + """,system-ui,-apple-system,"Segoe UI",sans-serif;
margin:0;color:#1f2933;background:#f5f7fa}
header{background:#1f2933;color:#fff;padding:12px 24px;display:flex;align-items:center;
justify-content:space-between}
header h1{font-size:18px;margin:0}
main{padding:16px 24px;display:grid;
grid-template-columns:repeat(auto-fit,minmax(min(420px,100%),1fr));gap:16px}
section{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:12px 16px;
min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
td,th{padding:4px 8px;border-bottom:1px solid #eef2f6;text-align:left;overflow-wrap:anywhere}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
svg.chart{display:block;width:100%;height:auto}
#reconciliation table{margin-top:8px}
#reconciliation td,#reconciliation th{font-size:13px}
.muted{color:#627d98}
a{color:#2f6fde}
form.inline{display:inline}
button{font:inherit}
"""
)


@dataclass(frozen=True, slots=True)
class PageFigures:
    month: str  # YYYY-MM
    timezone: str
    first_day: str
    last_day: str
    series: Sequence[revenue.MonthMrr]
    summaries: Sequence[revenue.MonthSummary]
    reconciliation: dict[str, Any] | None = None
    """The latest stored run (``service.finance.reconcile.stored``)."""
    includes_test: bool = False
    """Test merchants (on a test clock) counted: the figures and the download links."""


def _money(amount_minor: int, currency: str) -> str:
    return escape(format_minor(amount_minor, currency))


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above ``value`` (a round top for the axis)."""
    scale = 1
    while True:
        for step in (100, 200, 250, 500):
            if step * scale >= value:
                return step * scale
        scale *= 10


def mrr_chart(series: Sequence[revenue.MonthMrr], *, width: int = 1000, height: int = 320) -> str:
    """Stacked bars: one bar per month, a segment per tier (all currencies' minor units
    stacked as given; the catalog bills in CNY). Drawn on a ``width`` × ``height`` grid that
    scales to the width of its card (``svg.chart``)."""
    left, right, top, bottom = 72, 16, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(t.mrr_minor for t in month.tiers) for month in series]
    peak = _nice_ceiling(max(totals, default=0))
    slot = plot_w / max(len(series), 1)
    bar = slot * 0.6
    parts = [
        f'<svg id="mrr-chart" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="MRR by tier over time">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#9fb3c8"/>',
    ]
    currency = next((t.currency for m in series for t in m.tiers), "CNY")
    for step in range(5):
        value = peak * step / 4
        y = top + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'stroke="#eef2f6"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#627d98">{_money(round(value), currency)}</text>'
        )
    for index, month in enumerate(series):
        x = left + index * slot + (slot - bar) / 2
        y = top + plot_h
        by_tier = {t.tier: t for t in month.tiers}
        for tier in revenue.TIERS:
            row = by_tier.get(tier)
            if row is None or row.mrr_minor <= 0:
                continue
            h = plot_h * row.mrr_minor / peak
            y -= h
            parts.append(
                f'<rect class="bar" data-month="{month.month}" data-tier="{tier}" '
                f'data-mrr-minor="{row.mrr_minor}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{TIER_COLOURS[tier]}">'
                f"<title>{month.month} {tier}: {_money(row.mrr_minor, row.currency)}</title>"
                "</rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" font-size="11" '
            f'text-anchor="middle" fill="#334e68">{month.month}</text>'
        )
    for index, tier in enumerate(revenue.TIERS):
        x = left + index * 110
        parts.append(
            f'<rect x="{x}" y="{height - 14}" width="10" height="10" '
            f'fill="{TIER_COLOURS[tier]}"/>'
            f'<text x="{x + 14}" y="{height - 5}" font-size="11">{tier}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(figures: PageFigures) -> str:
    latest = figures.series[-1] if figures.series else revenue.MonthMrr(figures.month, [])
    mrr_rows = (
        "".join(
            f'<tr><td>{escape(t.tier)}</td><td class="num" data-mrr-tier="{escape(t.tier)}" '
            f'data-minor="{t.mrr_minor}">{_money(t.mrr_minor, t.currency)}</td>'
            f'<td class="num">{t.subscriptions}</td></tr>'
            for t in latest.tiers
        )
        or '<tr><td colspan="3" class="muted">No paying subscriptions.</td></tr>'
    )
    status_rows = (
        "".join(
            f"<tr><td>{escape(s.currency)} · {escape(status)}</td>"
            f'<td class="num" data-status="{escape(status)}" data-currency="{escape(s.currency)}"'
            f">{count}</td></tr>"
            for s in figures.summaries
            for status, count in sorted(s.invoice_status_counts.items())
        )
        or '<tr><td colspan="2" class="muted">No invoices finalized this month.</td></tr>'
    )
    money_rows = (
        "".join(
            f"<tr><td>{escape(s.currency)}</td>"
            f'<td class="num" data-billed="{escape(s.currency)}" data-minor="{s.billed_minor}">'
            f"{_money(s.billed_minor, s.currency)}</td>"
            f'<td class="num" data-collected="{escape(s.currency)}" '
            f'data-minor="{s.collected_minor}">{_money(s.collected_minor, s.currency)}</td></tr>'
            for s in figures.summaries
        )
        or '<tr><td colspan="3" class="muted">Nothing billed or collected.</td></tr>'
    )
    test = "&amp;include_test=true" if figures.includes_test else ""
    links = "".join(
        f"<tr><td>{kind.value.replace('_', ' ')}</td><td>"
        + " · ".join(
            f'<a class="export" href="/finance/exports/{kind.value}?from={figures.first_day}'
            f"&amp;to={figures.last_day}&amp;format={fmt.value}&amp;timezone="
            f'{escape(figures.timezone)}{test}">{fmt.value}</a>'
            for fmt in ExportFormat
        )
        + f' · <a class="export" href="/finance/exports/{kind.value}?from={figures.first_day}'
        f"&amp;to={figures.last_day}&amp;format=csv&amp;bom=true&amp;timezone="
        f'{escape(figures.timezone)}{test}">csv for Excel</a></td></tr>'
        for kind in ExportKind
    )
    month = escape(figures.month)
    keep_test = (
        '<input type="hidden" name="include_test" value="true">' if figures.includes_test else ""
    )
    test_toggle = (
        f'<p class="muted" id="test-data">Test merchants (on a test clock) are counted. '
        f'<a href="/finance?month={month}">Leave them out</a></p>'
        if figures.includes_test
        else f'<p class="muted" id="test-data">Test merchants (on a test clock) are left out. '
        f'<a href="/finance?month={month}&amp;include_test=true">Count them</a></p>'
    )
    reconciliation = _reconciliation(figures.reconciliation)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Finance · {escape(figures.month)} · Kefu Billing</title><style>{PAGE_CSS}</style></head>
<body><header><h1>Kefu Billing · Finance · <span id="month">{escape(figures.month)}</span></h1>
<form class="inline" method="get" action="/finance"><input type="month" name="month"
value="{escape(figures.month)}">{keep_test} <button>Show</button></form>
<form class="inline" method="post" action="/finance/logout"><button>Log out</button></form>
</header><main>
<section class="wide" id="chart-card"><h2>MRR by tier, month ends
({escape(figures.timezone)})</h2>
{mrr_chart(figures.series)}{test_toggle}</section>
<section><h2>MRR at the end of {escape(figures.month)}</h2><table id="mrr">
<tr><th>tier</th><th class="num">MRR</th><th class="num">subscriptions</th></tr>{mrr_rows}
</table></section>
<section><h2>Billed and collected in {escape(figures.month)}</h2><table id="money">
<tr><th>currency</th><th class="num">billed</th><th class="num">collected</th></tr>{money_rows}
</table><p class="muted">Billed: invoices finalized in the month. Collected: payments received
in it.</p></section>
<section><h2>Invoices finalized in {escape(figures.month)}, by status</h2>
<table id="statuses">{status_rows}</table></section>
<section class="wide"><h2>Latest reconciliation</h2>{reconciliation}</section>
<section class="wide"><h2>Exports for {escape(figures.first_day)} – {escape(figures.last_day)}
</h2><table id="exports">{links}</table></section>
</main></body></html>"""


_SHOWN_MISMATCHES: Final = 50
_SUMMARY_COLUMNS: Final = (
    "billed_minor", "collected_minor", "refunded_minor", "stripe_charged_minor",
    "stripe_fees_minor", "difference_minor",
)  # fmt: skip


def _reconciliation(run: dict[str, Any] | None) -> str:
    if run is None:
        return (
            '<p class="muted" id="reconciliation">No reconciliation against Stripe has been '
            "run yet (<code>billing reconcile --from … --to …</code>).</p>"
        )
    summaries = "".join(
        f"<tr><td>{escape(s['currency'])}</td>"
        + "".join(
            f'<td class="num">{_money(s[name], s["currency"])}</td>'
            for name in (
                "billed_minor",
                "collected_minor",
                "refunded_minor",
                "stripe_charged_minor",
                "stripe_fees_minor",
                "difference_minor",
            )
        )
        + "</tr>"
        for s in run["summaries"]
    )
    mismatches = "".join(
        f'<tr class="mismatch"><td>{escape(m["object"])}</td><td>{escape(m["kind"])}</td>'
        f"<td>{escape(str(m['reference']))}</td>"
        f'<td class="merchant">{escape(m.get("merchant_name") or "—")}</td>'
        f"<td>{escape(m['detail'])}</td></tr>"
        for m in run["mismatches"][:_SHOWN_MISMATCHES]
    )
    more = len(run["mismatches"]) - _SHOWN_MISMATCHES
    return (
        f'<div id="reconciliation" data-mismatches="{run["mismatch_count"]}">'
        f"<p>{escape(run['first_day'])} – {escape(run['last_day'])}, run "
        f"{escape(run['created_at'][:19])}: {run['matched']} matched, "
        f"<strong>{run['mismatch_count']} mismatch(es)</strong>.</p>"
        '<table><tr><th>currency</th><th class="num">billed</th><th class="num">collected</th>'
        '<th class="num">refunded</th><th class="num">Stripe charged</th>'
        f'<th class="num">Stripe fees</th><th class="num">difference</th></tr>{summaries}'
        "</table>"
        + (
            "<table><tr><th>object</th><th>kind</th><th>reference</th><th>merchant</th>"
            f"<th>what differs</th></tr>{mismatches}</table>"
            if mismatches
            else ""
        )
        + (f'<p class="muted">… and {more} more (export: reconciliation).</p>' if more > 0 else "")
        + "</div>"
    )


def render_login(message: str = "") -> str:
    note = f'<p id="message" style="color:#b42318">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Finance login · Kefu Billing</title>
<style>{PAGE_CSS} form{{max-width:420px;margin:48px auto;background:#fff;padding:24px;
border:1px solid #d9e2ec;border-radius:6px}} input{{width:100%;font:inherit;padding:6px;
box-sizing:border-box;margin:8px 0}}</style></head>
<body><form method="post" action="/finance/login"><h1>Finance</h1>{note}
<label for="api_key">Operator API key (finance:read, or support:read for the support view)</label>
<input id="api_key" name="api_key" type="password" autocomplete="off" required>
<button type="submit">Log in</button>
<p class="muted">The key is checked once; the browser keeps a signed session for an hour,
never the key.</p></form></body></html>"""
