"""What support sees of one merchant: who it is, its subscriptions and their history, usage by
period, invoices, its Stripe sync (customer, outbox rows, the webhook events about it) and its
audit trail. Every query names the merchant; finding merchants leaves the platform tenant out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service.audit import log as audit
from service.db.engine import current as current_database
from service.errors import NotFound
from service.tenancy.platform import PLATFORM_MERCHANT_ID

SHOWN = 50
"""Rows shown per section (newest first)."""

_SEARCH = """
SELECT id, name, contact_email, status, stripe_customer_id, created_at
FROM merchants
WHERE id <> $2
  AND (name ILIKE '%' || $1 || '%' ESCAPE '\\' OR contact_email ILIKE '%' || $1 || '%' ESCAPE '\\'
       OR id::text = lower($3) OR stripe_customer_id = $3)
ORDER BY name, id
LIMIT $4
"""

# Usage per subscription period and metric, summed over the aggregate's slot rows.
_USAGE = """
SELECT subscription_id, period_start, metric, sum(event_count) AS events,
       sum(quantity) AS quantity, sum(gmv_minor) AS gmv_minor
FROM usage_aggregates
WHERE merchant_id = $1
GROUP BY subscription_id, period_start, metric
ORDER BY period_start DESC, metric
LIMIT $2
"""

# Stripe events are stored before anyone knows their merchant (no merchant_id column): the
# merchant's are those about its Stripe customer.
_WEBHOOKS = """
SELECT event_id, event_type, status, attempts, last_error, outcome, received_at
FROM stripe_inbox
WHERE payload -> 'data' -> 'object' ->> 'customer' = $1
   OR (event_type LIKE 'customer.%' AND payload -> 'data' -> 'object' ->> 'id' = $1)
ORDER BY (status = 'parked') DESC, id DESC
LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class Dossier:
    merchant: dict[str, Any]
    subscriptions: list[dict[str, Any]]
    events: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    outbox_counts: dict[str, int]
    webhooks: list[dict[str, Any]]
    audit: list[dict[str, Any]]


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(text: str, *, limit: int = SHOWN) -> list[dict[str, Any]]:
    """Merchants whose name or e-mail contains ``text``, or whose id or Stripe customer id is
    ``text``."""
    text = text.strip()
    if not text:
        return []
    rows = await current_database().pool.fetch(
        _SEARCH, _like_escaped(text), PLATFORM_MERCHANT_ID, text, limit
    )
    return [dict(row) for row in rows]


async def gather(merchant_id: UUID) -> Dossier:
    """Everything support is shown about one merchant (``NotFound`` for an unknown id)."""
    pool = current_database().pool
    merchant = await pool.fetchrow(
        "SELECT id, name, contact_email, timezone, currency, status, test_clock_id, created_at,"
        " stripe_customer_id, stripe_customer_deleted_at, dispute_flagged_at"
        " FROM merchants WHERE id = $1 AND id <> $2",
        merchant_id,
        PLATFORM_MERCHANT_ID,
    )
    if merchant is None:
        raise NotFound(f"merchant {merchant_id} not found")
    subscriptions = await pool.fetch(
        "SELECT id, plan_code, plan_version, addons, status, currency, timezone,"
        " current_period_start, current_period_end, trial_end, started_at,"
        " cancel_at_period_end, canceled_at, paused_at"
        " FROM subscriptions WHERE merchant_id = $1 ORDER BY created_at DESC",
        merchant_id,
    )
    events = await pool.fetch(
        "SELECT subscription_id, kind, from_status, to_status, reason, actor_role, at"
        " FROM subscription_events WHERE merchant_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        merchant_id,
        SHOWN * 2,
    )
    usage = await pool.fetch(_USAGE, merchant_id, SHOWN * 2)
    invoices = await pool.fetch(
        "SELECT id, number, kind, status, period_start, period_end, currency, total_minor,"
        " amount_paid_minor, finalized_at, stripe_invoice_id, hosted_invoice_url"
        " FROM invoices WHERE merchant_id = $1 ORDER BY period_start DESC, created_at DESC"
        " LIMIT $2",
        merchant_id,
        SHOWN,
    )
    outbox = await pool.fetch(
        "SELECT id, command, status, attempts, next_attempt_at, last_error, created_at, sent_at"
        " FROM stripe_outbox WHERE merchant_id = $1"
        " ORDER BY (status = 'parked') DESC, id DESC LIMIT $2",
        merchant_id,
        SHOWN,
    )
    counts = await pool.fetch(
        "SELECT status, count(*) AS n FROM stripe_outbox WHERE merchant_id = $1 GROUP BY status",
        merchant_id,
    )
    customer = merchant["stripe_customer_id"]
    webhooks = await pool.fetch(_WEBHOOKS, customer, SHOWN) if customer else []
    trail = await audit.entries(merchant_id=merchant_id, since=None, until=None, limit=SHOWN)
    return Dossier(
        merchant=dict(merchant),
        subscriptions=[dict(row) for row in subscriptions],
        events=[dict(row) for row in events],
        usage=[dict(row) for row in usage],
        invoices=[dict(row) for row in invoices],
        outbox=[dict(row) for row in outbox],
        outbox_counts={row["status"]: row["n"] for row in counts},
        webhooks=[dict(row) for row in webhooks],
        audit=trail,
    )
