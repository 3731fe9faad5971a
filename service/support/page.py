"""The support view as HTML: a merchant search, and one merchant's dossier (subscriptions and
their history, usage by period, invoices with their documents, Stripe sync, parked webhooks and
outbox rows, audit trail). Same look and rules as the finance page: no script, nothing loaded
from elsewhere, every value escaped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from plans.money import format_minor
from service.finance.page import PAGE_CSS
from service.support.dossier import Dossier

_EXTRA_CSS = """
td.error{color:#b42318;max-width:420px;overflow-wrap:anywhere}
tr.parked td{background:#fff4f2}
form.search input{font:inherit;padding:4px 8px;width:320px}
"""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return escape(value.isoformat(timespec="seconds"))
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return escape(json.dumps(value, ensure_ascii=False, default=str))
    return escape(str(value))


def _table(
    table_id: str,
    headers: Sequence[str],
    rows: Iterable[tuple[str, Sequence[str]]],
    empty: str,
) -> str:
    """A table whose rows come as (css class, cells already escaped)."""
    body = "".join(
        f'<tr class="{css}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        for css, cells in rows
    )
    if not body:
        return f'<p class="muted" id="{table_id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _page(title: str, body: str, *, query: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Support · Kefu Billing</title><style>{PAGE_CSS}{_EXTRA_CSS}</style>
</head><body><header><h1>Kefu Billing · Support</h1>
<form class="inline search" method="get" action="/finance/support"><input type="search"
name="q" id="q" value="{escape(query)}" placeholder="name, e-mail, merchant id or cus_…">
<button>Find</button></form>
<form class="inline" method="post" action="/finance/logout"><button>Log out</button></form>
</header><main>{body}</main></body></html>"""


def render_search(query: str, found: Sequence[dict[str, Any]]) -> str:
    rows = (
        (
            "merchant",
            [
                f'<a class="merchant" href="/finance/support/merchants/{m["id"]}">'
                f"{_text(m['name'])}</a>",
                _text(m["contact_email"]),
                _text(m["status"]),
                _text(m["stripe_customer_id"]),
                _text(m["id"]),
            ],
        )
        for m in found
    )
    hint = "No merchant matches." if query else "Search by name, e-mail, merchant id or cus_…"
    table = _table("results", ("merchant", "e-mail", "status", "Stripe customer", "id"), rows, hint)
    return _page("Find a merchant", f'<section class="wide"><h2>Merchants</h2>{table}</section>',
                 query=query)  # fmt: skip


def render_dossier(dossier: Dossier) -> str:
    merchant = dossier.merchant
    merchant_id = merchant["id"]
    facts = "".join(
        f"<tr><th>{escape(label)}</th><td>{_text(merchant[key])}</td></tr>"
        for label, key in (
            ("name", "name"), ("e-mail", "contact_email"), ("id", "id"), ("status", "status"),
            ("time zone", "timezone"), ("currency", "currency"), ("since", "created_at"),
            ("test clock", "test_clock_id"), ("Stripe customer", "stripe_customer_id"),
            ("Stripe customer deleted", "stripe_customer_deleted_at"),
            ("dispute open since", "dispute_flagged_at"),
        )
    )  # fmt: skip
    subscriptions = _table(
        "subscriptions",
        ("id", "plan", "add-ons", "status", "period", "trial end", "cancel at end", "canceled"),
        (
            (
                "subscription",
                [
                    _text(s["id"]),
                    f"{_text(s['plan_code'])} v{s['plan_version']}",
                    _text(s["addons"]),
                    _text(s["status"]),
                    f"{_text(s['current_period_start'])} – {_text(s['current_period_end'])}",
                    _text(s["trial_end"]),
                    "yes" if s["cancel_at_period_end"] else "",
                    _text(s["canceled_at"]),
                ],
            )
            for s in dossier.subscriptions
        ),
        "No subscription.",
    )
    history = _table(
        "history",
        ("at", "what", "from", "to", "why", "by"),
        (
            (
                "event",
                [
                    _text(e["at"]),
                    _text(e["kind"]),
                    _text(e["from_status"]),
                    _text(e["to_status"]),
                    _text(e["reason"]),
                    _text(e["actor_role"]),
                ],
            )
            for e in dossier.events
        ),
        "No history yet.",
    )
    currency = merchant["currency"]
    usage = _table(
        "usage",
        ("period start", "metric", "events", "quantity", "GMV"),
        (
            (
                "usage",
                [
                    _text(u["period_start"]),
                    _text(u["metric"]),
                    _text(u["events"]),
                    _text(u["quantity"]),
                    escape(format_minor(int(u["gmv_minor"]), currency)),
                ],
            )
            for u in dossier.usage
        ),
        "No usage recorded.",
    )
    invoices = _table(
        "invoices",
        ("number", "kind", "status", "period", "total", "paid", "Stripe invoice", "document"),
        (
            (
                "invoice",
                [
                    _text(i["number"]) or '<span class="muted">draft</span>',
                    _text(i["kind"]),
                    _text(i["status"]),
                    f"{_text(i['period_start'])} – {_text(i['period_end'])}",
                    escape(format_minor(i["total_minor"], i["currency"])),
                    escape(format_minor(i["amount_paid_minor"], i["currency"])),
                    _text(i["stripe_invoice_id"]),
                    f'<a class="document" href="/finance/support/merchants/{merchant_id}'
                    f'/invoices/{i["id"]}">document</a>',
                ],
            )
            for i in dossier.invoices
        ),
        "No invoices.",
    )
    counts = ", ".join(f"{n} {status}" for status, n in sorted(dossier.outbox_counts.items()))
    outbox = _table(
        "outbox",
        ("row", "command", "status", "attempts", "next attempt", "sent", "error"),
        (
            (
                "parked" if o["status"] == "parked" else "row",
                [
                    _text(o["id"]),
                    _text(o["command"]),
                    _text(o["status"]),
                    _text(o["attempts"]),
                    _text(o["next_attempt_at"]) if o["status"] != "sent" else "",
                    _text(o["sent_at"]),
                    f'<span class="error">{_text(o["last_error"])}</span>',
                ],
            )
            for o in dossier.outbox
        ),
        "Nothing pushed to Stripe for this merchant yet.",
    )
    webhooks = _table(
        "webhooks",
        ("event", "type", "status", "attempts", "outcome / error", "received"),
        (
            (
                "parked" if w["status"] == "parked" else "row",
                [
                    _text(w["event_id"]),
                    _text(w["event_type"]),
                    _text(w["status"]),
                    _text(w["attempts"]),
                    _text(w["last_error"] or w["outcome"]),
                    _text(w["received_at"]),
                ],
            )
            for w in dossier.webhooks
        ),
        "No Stripe events about this merchant's customer."
        if merchant["stripe_customer_id"]
        else "Not in Stripe yet (no customer pushed).",
    )
    trail = _table(
        "audit",
        ("at", "who", "what", "entity", "change", "request"),
        (
            (
                "entry",
                [
                    _text(a["at"]),
                    _text(a["actor_role"]),
                    _text(a["action"]),
                    f"{_text(a['entity'])} {_text(a['entity_id'])}",
                    _text(a["changes"]),
                    _text(a["request_id"]),
                ],
            )
            for a in dossier.audit
        ),
        "No audit entries.",
    )
    body = f"""
<section><h2 id="merchant-name" data-merchant-id="{_text(merchant_id)}">{_text(merchant["name"])}
</h2><table id="facts">{facts}</table></section>
<section><h2>Subscriptions</h2>{subscriptions}</section>
<section class="wide"><h2>Subscription history</h2>{history}</section>
<section><h2>Usage by period</h2>{usage}</section>
<section class="wide"><h2>Invoices</h2>{invoices}</section>
<section class="wide"><h2>Stripe outbox <span class="muted">{escape(counts)}</span></h2>
{outbox}</section>
<section class="wide"><h2>Stripe webhooks</h2>{webhooks}</section>
<section class="wide"><h2>Audit trail</h2>{trail}</section>"""
    return _page(str(merchant["name"]), body)
