"""Invoice events: Stripe's number and hosted page, payment, failed payment (dunning), void,
uncollectible. An invoice only moves forward: once paid, void or uncollectible, a late
``invoice.payment_failed`` or an older ``invoice.updated`` changes nothing."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from service.db.tables import Invoice, Payment, Subscription
from service.invoicing import invoices
from service.outgoing import emit
from service.stripe_outbox import Command, enqueue
from service.subscriptions import lifecycle
from service.subscriptions.states import ALLOWED, Status
from service.tenancy import stripe_owners
from service.tenancy.principal import SYSTEM_ACTOR
from webhooks import records
from webhooks.handlers.lookup import data_object, our_invoice

log = structlog.get_logger(__name__)

RETRY_SCHEDULE = (timedelta(days=3), timedelta(days=5), timedelta(days=7))
"""Dunning: after the n-th failed attempt, Stripe is asked to collect again this much later."""
DUNNING_ATTEMPTS = len(RETRY_SCHEDULE) + 1
"""After this many failed attempts the subscription is suspended."""


def _on_our_invoice(
    handle: Callable[[Invoice, dict[str, Any], dict[str, Any]], Awaitable[str]],
) -> Callable[..., Awaitable[str]]:
    """A handler of an event about one of our invoices: it gets the invoice, locked, with the
    event and its Stripe invoice; an invoice that is not ours is noted as such."""

    @functools.wraps(handle)
    async def handler(event: dict[str, Any], *, now: datetime) -> str:
        obj = data_object(event)
        invoice = await our_invoice(obj)
        if invoice is None:
            return "not ours"
        return await handle(invoice, event, obj)

    return handler


async def _note_event(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> None:
    """Record Stripe's number and hosted page once known, and the newest event applied."""
    columns: list[Any] = []
    if invoice.stripe_invoice_id is None:
        invoice.stripe_invoice_id = obj["id"]
        columns.append(Invoice.stripe_invoice_id)
    if obj.get("number") and invoice.stripe_number is None:
        invoice.stripe_number = obj["number"]
        columns.append(Invoice.stripe_number)
    if obj.get("hosted_invoice_url") and invoice.hosted_invoice_url is None:
        invoice.hosted_invoice_url = obj["hosted_invoice_url"]
        columns.append(Invoice.hosted_invoice_url)
    if event["created"] > invoice.stripe_event_created:
        invoice.stripe_event_created = event["created"]
        columns.append(Invoice.stripe_event_created)
    if columns:
        await invoice.save(columns)


async def move_subscription(invoice: Invoice, target: Status, *, reason: str, at: datetime) -> str:
    sub = (
        await Subscription.objects()
        .where(Subscription.merchant_id == invoice.merchant_id)
        .where(Subscription.id == invoice.subscription_id)
        .lock_rows("UPDATE")
        .first()
    )
    if sub is None or sub.status == target.value:
        return ""
    path = [target]
    if target is Status.SUSPENDED and sub.status == Status.ACTIVE:
        path = [Status.PAST_DUE, Status.SUSPENDED]
    for step in path:
        if (Status(sub.status), step) not in ALLOWED:
            return f"; subscription stays {sub.status}"
        await lifecycle.transition(sub, step, reason=reason, actor=SYSTEM_ACTOR, now=at)
    return f"; subscription {sub.status}"


@_on_our_invoice
async def finalized(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    await _note_event(invoice, event, obj)
    return f"number {obj.get('number')}"


@_on_our_invoice
async def updated(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    if event["created"] < invoice.stripe_event_created:
        return "stale: older than what we hold"
    await _note_event(invoice, event, obj)
    return "noted"


@_on_our_invoice
async def paid(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    await _note_event(invoice, event, obj)
    paid_at = records.at((obj.get("status_transitions") or {}).get("paid_at") or event["created"])
    outcome = "nothing paid: credited in full"  # no money moved, so no payment row
    if obj.get("amount_paid"):
        # Which payment intent and charge paid it: from the payload when it says (a webhook of
        # an API version or endpoint that includes them), else asked of Stripe by the outbox.
        intent_id, charge_id = records.payment_of(obj) or (None, None)
        inserted = await Payment.raw(
            "INSERT INTO payments (merchant_id, invoice_id, amount_minor, currency,"
            " stripe_invoice_id, stripe_payment_intent_id, stripe_charge_id, paid_at,"
            " stripe_event_id) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})"
            " ON CONFLICT (merchant_id, invoice_id) DO NOTHING RETURNING id",
            invoice.merchant_id,
            invoice.id,
            obj["amount_paid"],
            invoice.currency,
            obj["id"],
            intent_id,
            charge_id,
            paid_at,
            event["id"],
        )
        await stripe_owners.remember(
            invoice.merchant_id, payment_intent=intent_id, charge=charge_id
        )
        outcome = "payment recorded" if inserted else "payment already recorded"
        if inserted and charge_id is None:
            await enqueue(
                invoice.merchant_id, Command.PAYMENT_LOOKUP, {"invoice_id": str(invoice.id)}
            )
            outcome += "; its charge is asked of Stripe"
    if invoice.status in ("open", "uncollectible"):
        if obj.get("amount_paid") != invoice.amount_due_minor:
            log.warning(
                "stripe_paid_amount_differs",
                invoice_id=str(invoice.id),
                stripe_amount_paid=obj.get("amount_paid"),
                amount_due_minor=invoice.amount_due_minor,
            )
        await invoices.record_payment(invoice, invoice.amount_due_minor, at=paid_at)
    if invoice.next_payment_retry_at is not None:
        invoice.next_payment_retry_at = None
        await invoice.save([Invoice.next_payment_retry_at])
    outcome += await _restore_if_settled(invoice, at=paid_at)
    return outcome


async def _restore_if_settled(invoice: Invoice, *, at: datetime) -> str:
    """Back to active once no invoice of the subscription is left failing or overdue."""
    still_failing = await Invoice.exists().where(
        (Invoice.merchant_id == invoice.merchant_id)
        & (Invoice.subscription_id == invoice.subscription_id)
        & (Invoice.status == "open")
        & ((Invoice.payment_attempts > 0) | (Invoice.overdue_stage > 0))
    )
    if still_failing:
        return ""
    sub = await lifecycle.get(invoice.merchant_id, invoice.subscription_id)
    if sub.status not in (Status.PAST_DUE, Status.SUSPENDED):
        return ""
    return await move_subscription(invoice, Status.ACTIVE, reason="invoice paid", at=at)


@_on_our_invoice
async def payment_failed(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    await _note_event(invoice, event, obj)
    if invoice.status != "open":
        return f"ignored: invoice is {invoice.status}"
    attempts = max(invoice.payment_attempts, int(obj.get("attempt_count") or 1))
    if attempts == invoice.payment_attempts:
        return f"attempt {attempts} already counted"
    failed_at = records.at(event["created"])
    invoice.payment_attempts = attempts
    if attempts >= DUNNING_ATTEMPTS:
        invoice.next_payment_retry_at = None
        target, reason = Status.SUSPENDED, f"payment failed {attempts} times"
    else:
        invoice.next_payment_retry_at = failed_at + RETRY_SCHEDULE[attempts - 1]
        target, reason = Status.PAST_DUE, f"payment attempt {attempts} failed"
    await invoice.save([Invoice.payment_attempts, Invoice.next_payment_retry_at])
    await emit.invoice_payment_failed(invoice.merchant_id, invoice.id, at=failed_at)
    moved = await move_subscription(invoice, target, reason=reason, at=failed_at)
    return f"attempt {attempts} failed{moved}"


@_on_our_invoice
async def voided(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    await _note_event(invoice, event, obj)
    if invoice.status != "open" or invoice.amount_paid_minor:
        return f"ignored: invoice is {invoice.status}"
    await invoices.void(invoice.merchant_id, invoice.id, now=records.at(event["created"]))
    return "voided"


@_on_our_invoice
async def marked_uncollectible(invoice: Invoice, event: dict[str, Any], obj: dict[str, Any]) -> str:
    await _note_event(invoice, event, obj)
    if invoice.status != "open":
        return f"ignored: invoice is {invoice.status}"
    await invoices.mark_uncollectible(invoice, at=records.at(event["created"]))
    return "marked uncollectible"


HANDLERS = {
    "invoice.finalized": finalized,
    "invoice.updated": updated,
    "invoice.paid": paid,
    "invoice.payment_failed": payment_failed,
    "invoice.voided": voided,
    "invoice.marked_uncollectible": marked_uncollectible,
}
