"""Reconciliation: this ledger against Stripe — invoices, payments (charges), refunds, and the
balance transactions behind them — every item matched or listed with both sides.

Scope: our invoices finalized in the range (accounting dates in the chosen zone), with their
payments and refunds; Stripe's objects created in the range widened by ``MARGIN`` on each side
(a push can land after midnight), keeping only those of the merchants in scope. An object
matched by id is compared whatever its date; one found on a single side is reported only when
it belongs to the range. Stripe is read through a ``StripeSource`` handed in by the
composition root (``webhooks/reconcile_source.py``): this module never imports ``stripe``.

A run is stored (``finance_reconciliations``) and readable afterwards; every mismatch is also
a structured log line (``reconciliation_mismatch``). ``/metrics`` reads the latest stored run
(``service.observability.stored``), whichever process made it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Final, Protocol
from uuid import UUID

import structlog

from service.db import engine as db_engine
from service.wire import rfc3339_utc

log = structlog.get_logger(__name__)

MARGIN: Final = timedelta(days=3)
_STATUSES_WITH_STRIPE: Final = ("open", "paid", "void", "uncollectible")


@dataclass(frozen=True, slots=True)
class StripeItem:
    id: str
    amount_minor: int
    currency: str
    status: str
    customer: str = ""
    amount_paid_minor: int = 0
    link: str = ""
    """Charges: the payment intent; refunds: the charge; balance transactions: the source."""
    balance_transaction: str = ""
    reference: str = ""
    """Invoices: our invoice id from the metadata we pushed."""
    merchant_id: str = ""
    number: str = ""
    fee_minor: int = 0
    net_minor: int = 0


@dataclass(frozen=True, slots=True)
class StripeSnapshot:
    invoices: list[StripeItem]
    charges: list[StripeItem]
    refunds: list[StripeItem]
    transactions: list[StripeItem]


class StripeSource(Protocol):
    async def snapshot(self, start: datetime, end: datetime) -> StripeSnapshot: ...


@dataclass(frozen=True, slots=True)
class Mismatch:
    object: str  # invoice | payment | refund
    kind: str  # amount | status | currency | missing_here | missing_in_stripe |
    #            paid_there_open_here | voided_here_only | amount_paid
    reference: str
    ours: dict[str, Any] | None
    theirs: dict[str, Any] | None
    detail: str
    merchant_id: str = ""
    """The merchant it concerns, where known (ours, or a Stripe object of a customer we map)."""
    merchant_name: str = ""


@dataclass(slots=True)
class CurrencySummary:
    currency: str
    billed_minor: int = 0
    collected_minor: int = 0
    refunded_minor: int = 0
    stripe_charged_minor: int = 0
    stripe_refunded_minor: int = 0
    stripe_fees_minor: int = 0
    stripe_net_minor: int = 0

    @property
    def difference_minor(self) -> int:
        """What we think came in net of refunds, minus what Stripe says did."""
        return (self.collected_minor - self.refunded_minor) - (
            self.stripe_charged_minor - self.stripe_refunded_minor
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference_minor": self.difference_minor}


@dataclass(slots=True)
class Reconciliation:
    first_day: date
    last_day: date
    timezone: str
    merchant_ids: list[str] | None
    matched: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    summaries: dict[str, CurrencySummary] = field(default_factory=dict)

    def summary(self, currency: str) -> CurrencySummary:
        return self.summaries.setdefault(currency, CurrencySummary(currency))

    def add(self, mismatch: Mismatch) -> None:
        self.mismatches.append(mismatch)


# -- our side ----------------------------------------------------------------------------------


async def _ours(
    start: datetime, end: datetime, merchant_ids: Sequence[UUID] | None
) -> tuple[list[Any], list[Any], list[Any], dict[str, str]]:
    pool = db_engine.current().pool
    wanted = list(merchant_ids) if merchant_ids is not None else None
    invoices = await pool.fetch(
        "SELECT id, merchant_id, number, status, currency, total_minor, amount_paid_minor,"
        " stripe_invoice_id, finalized_at FROM invoices"
        " WHERE finalized_at >= $1 AND finalized_at < $2"
        " AND ($3::uuid[] IS NULL OR merchant_id = ANY($3::uuid[]))"
        " ORDER BY finalized_at, merchant_id, number",
        start,
        end,
        wanted,
    )
    invoice_ids = [row["id"] for row in invoices]
    payments = await pool.fetch(
        "SELECT p.id, p.merchant_id, p.amount_minor, p.currency, p.stripe_invoice_id,"
        " p.stripe_payment_intent_id, p.stripe_charge_id, i.number FROM payments p"
        " JOIN invoices i ON i.merchant_id = p.merchant_id AND i.id = p.invoice_id"
        " WHERE p.invoice_id = ANY($1::uuid[]) ORDER BY p.paid_at, p.id",
        invoice_ids,
    )
    refunds = await pool.fetch(
        "SELECT f.id, f.merchant_id, f.amount_minor, f.currency, f.status, f.stripe_refund_id,"
        " i.number FROM refunds f"
        " JOIN invoices i ON i.merchant_id = f.merchant_id AND i.id = f.invoice_id"
        " WHERE f.invoice_id = ANY($1::uuid[]) ORDER BY f.created_at, f.id",
        invoice_ids,
    )
    customers = await pool.fetch(
        "SELECT id, stripe_customer_id FROM merchants WHERE stripe_customer_id IS NOT NULL"
        " AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))",
        wanted,
    )
    return (
        list(invoices),
        list(payments),
        list(refunds),
        {row["stripe_customer_id"]: str(row["id"]) for row in customers},
    )


def _plain(row: Any, *names: str) -> dict[str, Any]:
    return {name: (str(row[name]) if isinstance(row[name], UUID) else row[name]) for name in names}


# -- matching ----------------------------------------------------------------------------------


def match(
    result: Reconciliation,
    *,
    invoices: Sequence[Any],
    payments: Sequence[Any],
    refunds: Sequence[Any],
    customers: dict[str, str],
    stripe: StripeSnapshot,
    is_scoped: bool,
    in_range: Any,
) -> Reconciliation:
    """Compare both sides. ``customers`` maps Stripe customer ids to our merchants in scope;
    ``is_scoped`` limits Stripe's objects to them; ``in_range(id)`` says whether a Stripe
    object was created inside the range proper."""
    scope = set(customers.values())

    def stripe_invoice_in_scope(item: StripeItem) -> bool:
        return not is_scoped or item.merchant_id in scope or item.customer in customers

    charges = {c.id: c for c in stripe.charges if not is_scoped or c.customer in customers}
    refunds_there = {r.id: r for r in stripe.refunds if r.link in charges or not is_scoped}
    invoices_there = {i.id: i for i in stripe.invoices if stripe_invoice_in_scope(i)}

    # Invoices.
    seen: set[str] = set()
    for row in invoices:
        currency = row["currency"]
        summary = result.summary(currency)  # every currency seen gets a line, even at zero
        if row["status"] != "void":
            summary.billed_minor += row["total_minor"]
        ours = _plain(row, "number", "status", "currency", "total_minor", "amount_paid_minor",
                      "stripe_invoice_id")  # fmt: skip
        ours["merchant_id"] = str(row["merchant_id"])
        stripe_id = row["stripe_invoice_id"]
        there = invoices_there.get(stripe_id) if stripe_id else None
        if there is None:
            if row["total_minor"] == 0 and not stripe_id:
                result.matched += 1  # nothing to collect: never sent to Stripe
                continue
            result.add(Mismatch("invoice", "missing_in_stripe", row["number"], ours, None,
                                "no Stripe invoice for this invoice",
                                str(row["merchant_id"])))  # fmt: skip
            continue
        seen.add(there.id)
        theirs = {"id": there.id, "number": there.number, "status": there.status,
                  "currency": there.currency, "total_minor": there.amount_minor,
                  "amount_paid_minor": there.amount_paid_minor}  # fmt: skip
        found = _compare_invoice(row, there)
        for kind, detail in found:
            result.add(Mismatch("invoice", kind, row["number"], ours, theirs, detail,
                                str(row["merchant_id"])))  # fmt: skip
        if not found:
            result.matched += 1
    for there in invoices_there.values():
        if there.id not in seen and in_range(there.id):
            result.add(Mismatch(
                "invoice", "missing_here", there.number or there.id, None,
                {"id": there.id, "number": there.number, "status": there.status,
                 "currency": there.currency, "total_minor": there.amount_minor},
                "a Stripe invoice this ledger does not have",
                there.merchant_id or customers.get(there.customer, ""),
            ))  # fmt: skip

    # Payments against charges.
    succeeded = {cid: c for cid, c in charges.items() if c.status == "succeeded"}
    by_intent = {c.link: c for c in succeeded.values() if c.link}
    matched_charges: set[str] = set()
    for row in payments:
        result.summary(row["currency"]).collected_minor += row["amount_minor"]
        ours = _plain(row, "number", "amount_minor", "currency", "stripe_charge_id",
                      "stripe_payment_intent_id")  # fmt: skip
        charge_id = row["stripe_charge_id"]
        intent_id = row["stripe_payment_intent_id"]
        if not charge_id and not intent_id:
            result.matched += 1  # paid outside Stripe (marked paid): no charge to match
            continue
        there = succeeded.get(charge_id) if charge_id else by_intent.get(intent_id)
        if there is None:
            detail = f"no succeeded Stripe charge {charge_id or intent_id}"
            result.add(Mismatch("payment", "missing_in_stripe", row["number"], ours, None, detail,
                                str(row["merchant_id"])))  # fmt: skip
            continue
        matched_charges.add(there.id)
        theirs = {"id": there.id, "amount_minor": there.amount_minor, "currency": there.currency}
        found = _compare_money(row["amount_minor"], row["currency"], there)
        for kind, detail in found:
            result.add(Mismatch("payment", kind, row["number"], ours, theirs, detail,
                                str(row["merchant_id"])))  # fmt: skip
        if not found:
            result.matched += 1
    for charge in succeeded.values():
        result.summary(charge.currency).stripe_charged_minor += charge.amount_minor
        if charge.id not in matched_charges and in_range(charge.id):
            result.add(Mismatch(
                "payment", "missing_here", charge.id, None,
                {"id": charge.id, "amount_minor": charge.amount_minor,
                 "currency": charge.currency, "payment_intent": charge.link},
                "a Stripe charge with no payment recorded here",
                customers.get(charge.customer, ""),
            ))  # fmt: skip

    # Refunds.
    matched_refunds: set[str] = set()
    for row in refunds:
        if row["status"] not in ("failed", "canceled"):
            result.summary(row["currency"]).refunded_minor += row["amount_minor"]
        ours = _plain(row, "number", "amount_minor", "currency", "status", "stripe_refund_id")
        there = refunds_there.get(row["stripe_refund_id"])
        if there is None:
            result.add(Mismatch("refund", "missing_in_stripe", row["stripe_refund_id"], ours,
                                None, "no such Stripe refund",
                                str(row["merchant_id"])))  # fmt: skip
            continue
        matched_refunds.add(there.id)
        theirs = {
            "id": there.id,
            "amount_minor": there.amount_minor,
            "currency": there.currency,
            "status": there.status,
            "charge": there.link,
        }
        found = _compare_money(row["amount_minor"], row["currency"], there)
        if there.status != row["status"]:
            found.append(("status", f"status here {row['status']}, in Stripe {there.status}"))
        for kind, detail in found:
            result.add(Mismatch("refund", kind, row["stripe_refund_id"], ours, theirs, detail,
                                str(row["merchant_id"])))  # fmt: skip
        if not found:
            result.matched += 1
    for refund in refunds_there.values():
        if refund.status not in ("failed", "canceled"):
            result.summary(refund.currency).stripe_refunded_minor += refund.amount_minor
        if refund.id not in matched_refunds and in_range(refund.id):
            result.add(Mismatch(
                "refund", "missing_here", refund.id, None,
                {"id": refund.id, "amount_minor": refund.amount_minor,
                 "currency": refund.currency, "status": refund.status, "charge": refund.link},
                "a refund made in Stripe that this ledger does not have",
                customers.get(charges[refund.link].customer, "") if refund.link in charges else "",
            ))  # fmt: skip

    # Balance transactions: Stripe's fees and net for the charges and refunds in scope.
    sources = set(charges) | set(refunds_there)
    for txn in stripe.transactions:
        if txn.link in sources:
            summary = result.summary(txn.currency)
            summary.stripe_fees_minor += txn.fee_minor
            summary.stripe_net_minor += txn.net_minor
    return result


def _compare_money(amount: int, currency: str, there: StripeItem) -> list[tuple[str, str]]:
    found = []
    if currency != there.currency:
        found.append(("currency", f"currency here {currency}, in Stripe {there.currency}"))
    if amount != there.amount_minor:
        found.append(("amount", f"amount here {amount}, in Stripe {there.amount_minor}"))
    return found


def _compare_invoice(row: Any, there: StripeItem) -> list[tuple[str, str]]:
    found = _compare_money(row["total_minor"], row["currency"], there)
    ours, theirs = row["status"], there.status
    if ours != theirs:
        if theirs == "paid" and ours == "open":
            found.append(("paid_there_open_here", "paid in Stripe, still open here"))
        elif ours == "void":
            found.append(("voided_here_only", f"void here, {theirs} in Stripe"))
        else:
            found.append(("status", f"status here {ours}, in Stripe {theirs}"))
    elif row["amount_paid_minor"] != there.amount_paid_minor and ours == "paid":
        found.append(("amount_paid", f"paid here {row['amount_paid_minor']}, in Stripe "
                      f"{there.amount_paid_minor}"))  # fmt: skip
    return found


# -- running and storing -----------------------------------------------------------------------


async def run(
    source: StripeSource,
    *,
    first_day: date,
    last_day: date,
    timezone: str,
    merchant_ids: Sequence[UUID] | None = None,
) -> Reconciliation:
    from service.finance.exports import ExportKind, ExportRequest

    span = ExportRequest(ExportKind.INVOICES, first_day, last_day, timezone)
    start, end = span.start, span.end
    invoices, payments, refunds, customers = await _ours(start, end, merchant_ids)
    snapshot = await source.snapshot(start - MARGIN, end + MARGIN)
    proper = await source.snapshot(start, end) if MARGIN else snapshot
    created_in_range = {
        item.id for items in (proper.invoices, proper.charges, proper.refunds) for item in items
    }
    result = Reconciliation(
        first_day, last_day, timezone,
        [str(m) for m in merchant_ids] if merchant_ids is not None else None,
    )  # fmt: skip
    match(
        result,
        invoices=invoices,
        payments=payments,
        refunds=refunds,
        customers=customers,
        stripe=snapshot,
        is_scoped=merchant_ids is not None,
        in_range=created_in_range.__contains__,
    )
    await _name_merchants(result)
    for mismatch in result.mismatches:
        log.warning(
            "reconciliation_mismatch",
            object=mismatch.object,
            kind=mismatch.kind,
            reference=mismatch.reference,
            detail=mismatch.detail,
        )
    return result


async def _name_merchants(result: Reconciliation) -> None:
    """Each mismatch with its merchant's name (as of the run), so people see whose it is."""
    ids = sorted({UUID(m.merchant_id) for m in result.mismatches if m.merchant_id})
    if not ids:
        return
    rows = await db_engine.current().pool.fetch(
        "SELECT id, name FROM merchants WHERE id = ANY($1::uuid[])", ids
    )
    names = {str(row["id"]): row["name"] for row in rows}
    result.mismatches = [
        replace(m, merchant_name=names.get(m.merchant_id, "")) for m in result.mismatches
    ]


def as_document(result: Reconciliation) -> dict[str, Any]:
    return {
        "first_day": result.first_day.isoformat(),
        "last_day": result.last_day.isoformat(),
        "timezone": result.timezone,
        "merchant_ids": result.merchant_ids,
        "matched": result.matched,
        "mismatch_count": len(result.mismatches),
        "summaries": [result.summaries[c].as_dict() for c in sorted(result.summaries)],
        "mismatches": [asdict(m) for m in result.mismatches],
    }


async def store(result: Reconciliation, *, now: datetime) -> dict[str, Any]:
    """Keep a run; returns it as stored (with its id and time)."""
    document = as_document(result)
    row = await db_engine.current().pool.fetchrow(
        "INSERT INTO finance_reconciliations (created_at, first_day, last_day, timezone,"
        " matched, mismatch_count, document) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
        " RETURNING id, created_at",
        now,
        result.first_day,
        result.last_day,
        result.timezone,
        result.matched,
        len(result.mismatches),
        json.dumps(document, default=str),
    )
    return {"id": str(row["id"]), "created_at": rfc3339_utc(row["created_at"]), **document}


async def stored(reconciliation_id: UUID | None = None) -> dict[str, Any] | None:
    """A stored run by id, or the latest one; ``None`` if there is none."""
    row = await db_engine.current().pool.fetchrow(
        "SELECT id, created_at, document::text AS document FROM finance_reconciliations"
        " WHERE ($1::uuid IS NULL OR id = $1) ORDER BY created_at DESC, id DESC LIMIT 1",
        reconciliation_id,
    )
    if row is None:
        return None
    return {
        "id": str(row["id"]),
        "created_at": rfc3339_utc(row["created_at"]),
        **json.loads(row["document"]),
    }
