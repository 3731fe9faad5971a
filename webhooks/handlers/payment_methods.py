"""Ways to pay: a card saved through Checkout, cards attached and detached, the customer's
invoice default changing.

``checkout.session.completed`` (setup mode) says a merchant saved a card: its payment-setup link
is used, and the outbox reads the SetupIntent and makes the card the customer's invoice default
(a Stripe call: never inside this transaction). ``customer.updated`` then says which card the
customer's invoices are paid with — our record of whether the merchant can be charged; the first
one (or a new one) pays the merchant's open invoices, and losing it without a replacement tells
the platform (``payment_method.required``). ``payment_method.attached``/``detached`` keep what
each card is. Every event may come late, twice or out of order: the records keep the newest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from service.db.tables import Invoice, Merchant
from service.outgoing import emit
from service.payments import links, methods, terms
from service.stripe_outbox import Command, enqueue
from webhooks import records
from webhooks.handlers.lookup import data_object, merchant_of_customer

log = structlog.get_logger(__name__)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


async def checkout_completed(event: dict[str, Any], *, now: datetime) -> str:
    session = data_object(event)
    if session.get("mode") != "setup" or session.get("status") != "complete":
        return f"ignored: a {session.get('mode')} session"
    merchant = await merchant_of_customer(session.get("customer"))
    if merchant is None:
        return "not ours"
    link_id = _uuid((session.get("metadata") or {}).get("kefu_setup_link_id"))
    if link_id is not None:
        await links.mark_completed(merchant.id, link_id, at=records.at(event["created"]))
    if not session.get("setup_intent"):
        return "completed without a SetupIntent: nothing saved"
    await enqueue(
        merchant.id,
        Command.PAYMENT_METHOD_SET_DEFAULT,
        {"setup_intent": session["setup_intent"], "checkout_session": session["id"]},
    )
    return "card saved; making it the invoice default"


async def attached(event: dict[str, Any], *, now: datetime) -> str:
    method = data_object(event)
    merchant = await merchant_of_customer(method.get("customer"))
    if merchant is None:
        return "not ours"
    is_newest = await methods.record_method(
        merchant.id,
        method,
        is_attached=True,
        event_created=event["created"],
        at=records.at(event["created"]),
    )
    return f"{method.get('type')} saved" if is_newest else "stale: a newer event was applied"


async def detached(event: dict[str, Any], *, now: datetime) -> str:
    method = data_object(event)
    previous = (event["data"].get("previous_attributes") or {}).get("customer")
    merchant = await merchant_of_customer(previous)
    if merchant is None:
        return "not ours"
    is_newest = await methods.record_method(
        merchant.id,
        method,
        is_attached=False,
        event_created=event["created"],
        at=records.at(event["created"]),
    )
    return f"{method.get('type')} removed" if is_newest else "stale: a newer event was applied"


_OPEN_PUSHED = """
SELECT id FROM invoices
WHERE merchant_id = {} AND status = 'open' AND amount_due_minor > 0
  AND stripe_invoice_id IS NOT NULL
ORDER BY finalized_at, id
"""


async def record_invoice_default(
    merchant: Merchant, customer: dict[str, Any], *, event_created: int
) -> str:
    """What a customer event says of the card its invoices are paid with (customer.updated,
    whoever caused it): recorded, and acted on when it appeared or went."""
    settings = customer.get("invoice_settings") or {}
    chosen = settings.get("default_payment_method")
    if isinstance(chosen, dict):
        chosen = chosen.get("id")
    change = await methods.record_default(merchant.id, chosen, event_created=event_created)
    if change is None:
        return "payment method: stale event"
    if change.is_new and change.invoice_collection == terms.AUTOMATIC:
        paid = await _pay_open_invoices(merchant.id, str(change.after))
        return f"can be charged; {paid} open invoice(s) to pay with it"
    if change.is_removed and change.invoice_collection == terms.AUTOMATIC:
        link = await links.issue(merchant.id, now=records.at(event_created))
        await emit.payment_method_required(
            merchant.id,
            at=records.at(event_created),
            reason="payment_method_removed",
            setup_url=link.url,
        )
        log.warning("payment_method_removed", merchant_id=str(merchant.id))
        return "no way to pay on file any more: invoices are sent"
    return "payment method unchanged" if change.before == change.after else "payment method noted"


async def _pay_open_invoices(merchant_id: UUID, payment_method_id: str) -> int:
    """Open invoices already at Stripe (sent while no way to pay was saved, or failing) are
    paid with the new card: ``invoices.pay(payment_method=…)``, through the outbox."""
    rows = await Invoice.raw(_OPEN_PUSHED, merchant_id)
    for row in rows:
        await enqueue(
            merchant_id,
            Command.INVOICE_RETRY_PAYMENT,
            {"invoice_id": str(row["id"]), "payment_method": payment_method_id},
        )
    return len(rows)


HANDLERS = {
    "checkout.session.completed": checkout_completed,
    "payment_method.attached": attached,
    "payment_method.detached": detached,
}
