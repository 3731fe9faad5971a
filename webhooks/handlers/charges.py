"""Charge events: refunds and disputes.

A refund we made is matched to our credit note: the Stripe credit note that made it was created
by a request whose idempotency key names our credit note, and the events it caused carry that
key (``request.idempotency_key``); a refund made by the earlier two-step push carries our credit
note id in its metadata instead. Any other refund of one of our payments was made in the Stripe
dashboard and becomes a credit note (reason ``stripe_refund``) and a refund here.
``refund.created``, ``refund.updated`` and ``charge.refunded`` may all report the same refund:
the unique Stripe refund id makes the first one count and the others only move its status
forward. (``charge.refunded`` carries no refunds since API 2022-11-15 — ``Charge.refunds`` is
includable — so the ``refund.*`` events do the work.) Refunds and disputes name no customer:
their merchant is found from the payment intent or charge they are about
(``service.tenancy.stripe_owners``), recorded with the payment, before any row is read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from service.db.tables import CreditNote, Dispute, Invoice, Merchant, Refund
from service.invoicing import credit_notes
from service.stripe_outbox import credit_note_of
from webhooks import records
from webhooks.handlers.lookup import (
    NotYet,
    data_object,
    is_our_customer,
    merchant_paid_by,
    payment_for,
)

log = structlog.get_logger(__name__)


async def _refund(
    refund: dict[str, Any], *, event_created: int, caused_by: str | None = None
) -> str:
    refund_id = refund["id"]
    status = refund.get("status") or "pending"
    merchant_id = await merchant_paid_by(refund.get("payment_intent"), refund.get("charge"))
    if merchant_id is None:
        customer = refund.get("customer")
        if customer is None or await is_our_customer(customer):
            raise NotYet(f"no payment recorded yet for refund {refund_id}")
        return "not ours"
    if await Refund.exists().where(
        (Refund.merchant_id == merchant_id) & (Refund.stripe_refund_id == refund_id)
    ):
        await records.advance_refund_status(merchant_id, refund_id, status)
        return f"refund {refund_id} known ({status})"
    metadata = refund.get("metadata") or {}
    note_id = metadata.get("kefu_credit_note_id") or credit_note_of(caused_by)
    if note_id:
        note = (
            await CreditNote.objects()
            .where(CreditNote.merchant_id == merchant_id)
            .where(CreditNote.id == UUID(str(note_id)))
            .first()
        )
        if note is None:
            raise NotYet(f"credit note {note_id} not committed yet")
        await records.record_refund(
            merchant_id=note.merchant_id,
            invoice_id=note.invoice_id,
            credit_note_id=note.id,
            amount_minor=refund["amount"],
            currency=note.currency,
            status=status,
            stripe_refund_id=refund_id,
            origin="credit_note",
            at=records.at(refund.get("created") or event_created),
        )
        return f"refund {refund_id} matched to credit note {note.number}"
    payment = await payment_for(merchant_id, refund.get("payment_intent"), refund.get("charge"))
    if payment is None:
        raise NotYet(f"no payment recorded yet for refund {refund_id}")
    if status in ("failed", "canceled"):
        return f"refund {refund_id} {status}: nothing to record"
    at = records.at(refund.get("created") or event_created)
    # The refund row first: a concurrent handler of the same refund waits on its unique key,
    # then finds it recorded, so one credit note is issued, not two.
    is_new = await records.record_refund(
        merchant_id=payment.merchant_id,
        invoice_id=payment.invoice_id,
        credit_note_id=None,
        amount_minor=refund["amount"],
        currency=payment.currency,
        status=status,
        stripe_refund_id=refund_id,
        origin="stripe_dashboard",
        at=at,
    )
    if not is_new:
        return f"refund {refund_id} known"
    note, _ = await credit_notes.issue(
        payment.merchant_id,
        payment.invoice_id,
        amount_minor=refund["amount"],
        reason=credit_notes.Reason.STRIPE_REFUND,
        memo=f"Refund {refund_id} made in the Stripe dashboard",
        now=at,
        refund_status=records.CREDIT_NOTE_REFUND_STATUS.get(status, "pending"),
    )
    await Refund.update({Refund.credit_note_id: note.id}).where(
        (Refund.merchant_id == payment.merchant_id) & (Refund.stripe_refund_id == refund_id)
    )
    await CreditNote.update({CreditNote.stripe_refund_id: refund_id}).where(
        (CreditNote.merchant_id == payment.merchant_id) & (CreditNote.id == note.id)
    )
    log.info("stripe_dashboard_refund_recorded", refund=refund_id, credit_note=note.number)
    return f"dashboard refund {refund_id} → credit note {note.number}"


def _request_key(event: dict[str, Any]) -> str | None:
    return (event.get("request") or {}).get("idempotency_key")


async def refund_event(event: dict[str, Any], *, now: datetime) -> str:
    return await _refund(
        data_object(event), event_created=event["created"], caused_by=_request_key(event)
    )


async def charge_refunded(event: dict[str, Any], *, now: datetime) -> str:
    charge = data_object(event)
    outcomes = []
    for refund in (charge.get("refunds") or {}).get("data") or []:
        refund.setdefault("customer", charge.get("customer"))
        outcomes.append(
            await _refund(refund, event_created=event["created"], caused_by=_request_key(event))
        )
    return "; ".join(outcomes) or "no refunds listed (the refund.* events record them)"


_DISPUTE_RANK = {
    "warning_needs_response": 1,
    "needs_response": 1,
    "warning_under_review": 1,
    "under_review": 1,
    "warning_closed": 2,
    "won": 2,
    "lost": 2,
}


async def dispute_event(event: dict[str, Any], *, now: datetime) -> str:
    """Flag the invoice and the merchant while a dispute is open; record how it closed."""
    dispute = data_object(event)
    merchant_id = await merchant_paid_by(dispute.get("payment_intent"), dispute.get("charge"))
    payment = (
        None
        if merchant_id is None
        else await payment_for(merchant_id, dispute.get("payment_intent"), dispute.get("charge"))
    )
    if payment is None:
        raise NotYet(f"no payment recorded yet for dispute {dispute['id']}")
    status = dispute["status"]
    at = records.at(event["created"])
    this_dispute = (Dispute.merchant_id == payment.merchant_id) & (
        Dispute.stripe_dispute_id == dispute["id"]
    )
    row = await Dispute.objects().where(this_dispute).lock_rows("UPDATE").first()
    if row is None:
        await Dispute.raw(
            "INSERT INTO disputes (merchant_id, invoice_id, stripe_dispute_id, stripe_charge_id,"
            " amount_minor, currency, reason, status, opened_at) VALUES ({}, {}, {}, {}, {}, {},"
            " {}, {}, {}) ON CONFLICT (merchant_id, stripe_dispute_id) DO NOTHING",
            payment.merchant_id,
            payment.invoice_id,
            dispute["id"],
            dispute.get("charge") or "",
            dispute["amount"],
            payment.currency,
            dispute.get("reason") or "",
            status,
            records.at(dispute.get("created") or event["created"]),
        )
        row = await Dispute.objects().where(this_dispute).lock_rows("UPDATE").first()
        assert row is not None
    elif _DISPUTE_RANK.get(status, 1) < _DISPUTE_RANK.get(row.status, 1):
        return f"stale: dispute is already {row.status}"
    is_closed = _DISPUTE_RANK.get(status, 1) == 2
    row.status = status
    row.closed_at = at if is_closed else None
    await row.save([Dispute.status, Dispute.closed_at])
    await Invoice.update({Invoice.dispute_status: status}).where(
        (Invoice.merchant_id == payment.merchant_id) & (Invoice.id == payment.invoice_id)
    )
    open_disputes = await Dispute.count().where(
        (Dispute.merchant_id == payment.merchant_id) & (Dispute.closed_at.is_null())
    )
    await Merchant.update({Merchant.dispute_flagged_at: at if open_disputes else None}).where(
        Merchant.id == payment.merchant_id
    )
    log.info(
        "stripe_dispute", dispute=dispute["id"], status=status, merchant_flagged=bool(open_disputes)
    )
    return f"dispute {dispute['id']} {status}"


HANDLERS = {
    "refund.created": refund_event,
    "refund.updated": refund_event,
    "refund.failed": refund_event,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_event,
    "charge.dispute.updated": dispute_event,
    "charge.dispute.closed": dispute_event,
}
