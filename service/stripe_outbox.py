"""The Stripe outbox, as the domain sees it: ``enqueue`` a push in the caller's transaction.

The row commits with the change that causes it or not at all; ``webhooks.outbox`` sends it
later, in order per stream (a merchant, or ``catalog``), with a Stripe idempotency key made
from the row id, so a resend after a crash is the same request to Stripe. Each row names its
**subject**, the thing in Stripe it changes (an invoice, a plan, the customer's details; ''
for the whole stream): a row parked for a person holds back only the later rows of its subject
(all of them when its subject is ''), so one refused credit note does not stop next month's
invoice. An operator can put a parked row back in line (``requeue``), ``skip`` it with a reason,
or resolve it (``webhooks.outbox.resolve``); both are audited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import msgspec

from service.audit import log as audit
from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.db.tables import StripeOutbox
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.tenancy.principal import Actor

CATALOG_STREAM = "catalog"
KEY_PREFIX = "kefu-outbox-"
WHOLE_STREAM = ""
"""The subject of a row every later row of its stream depends on (the customer's creation)."""


class Command(StrEnum):
    CUSTOMER_CREATE = "customer.create"
    CUSTOMER_UPDATE = "customer.update"
    CATALOG_PLAN = "catalog.plan"
    INVOICE_PUSH = "invoice.push"
    INVOICE_RETRY_PAYMENT = "invoice.retry_payment"
    INVOICE_VOID = "invoice.void"
    CREDIT_NOTE_PUSH = "credit_note.push"
    PAYMENT_LOOKUP = "payment.lookup"
    """Ask Stripe which payment intent and charge paid an invoice (a webhook without them)."""
    PAYMENT_METHOD_SET_DEFAULT = "payment_method.set_default"
    """Make the card a Checkout Session saved the customer's invoice default."""


def subject_of(command: Command, payload: dict[str, Any]) -> str:
    """What in Stripe a row changes. Rows about an invoice (its push, payment retries, void,
    credit notes, the look-up of its charge, paying it with a newly saved card) share the
    invoice's subject; making a saved card the invoice default is the "payment method"."""
    if "invoice_id" in payload:
        return f"invoice {payload['invoice_id']}"
    if command is Command.CATALOG_PLAN:
        return f"plan {payload['code']} v{payload['version']}"
    if command is Command.CUSTOMER_UPDATE:
        return "customer details"
    if command is Command.PAYMENT_METHOD_SET_DEFAULT:
        return "payment method"
    return WHOLE_STREAM


# The id is taken first so the idempotency key, which must be unique and set on insert, can be
# derived from it: one statement, inside whatever transaction the caller holds.
_INSERT = (
    "INSERT INTO stripe_outbox (id, merchant_id, stream, subject, command, payload,"
    " idempotency_key)"
    " SELECT n, {}::uuid, {}::text, {}::text, {}::text, {}::jsonb, {}::text || n"
    " FROM (SELECT nextval(pg_get_serial_sequence('stripe_outbox', 'id')) AS n) AS next_id"
    " RETURNING id"
)


async def enqueue(merchant_id: UUID | None, command: Command, payload: dict[str, Any]) -> int:
    """Queue one push. Call inside the transaction of the change it reports. ``None``: a push of
    the catalog, stored under the platform tenant in the ``catalog`` stream."""
    stream = str(merchant_id) if merchant_id is not None else CATALOG_STREAM
    rows = await StripeOutbox.raw(
        _INSERT,
        merchant_id if merchant_id is not None else PLATFORM_MERCHANT_ID,
        stream,
        subject_of(command, payload),
        command.value,
        msgspec.json.encode(payload).decode(),
        KEY_PREFIX,
    )
    return int(rows[0]["id"])


# `_INSERT` for many rows in one statement: the ids are drawn in the rows' order, so rows of one
# stream keep the order they were given in.
_INSERT_MANY = """
INSERT INTO stripe_outbox (id, merchant_id, stream, subject, command, payload, idempotency_key)
SELECT n, m, st, su, c, p::jsonb, $6::text || n
FROM (SELECT nextval(pg_get_serial_sequence('stripe_outbox', 'id')) AS n, m, st, su, c, p
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
          AS given (m, st, su, c, p)) AS numbered
"""


async def enqueue_many(pushes: Sequence[tuple[UUID, Command, dict[str, Any]]]) -> None:
    """`enqueue` for several merchants' pushes at once (the period close's batches)."""
    if not pushes:
        return
    await transaction_connection().execute(
        _INSERT_MANY,
        [merchant_id for merchant_id, _, _ in pushes],
        [str(merchant_id) for merchant_id, _, _ in pushes],
        [subject_of(command, payload) for _, command, payload in pushes],
        [command.value for _, command, _ in pushes],
        [msgspec.json.encode(payload).decode() for _, _, payload in pushes],
        KEY_PREFIX,
    )


def outbox_id_of(idempotency_key: str | None) -> int | None:
    """The outbox row an idempotency key (or a step key made from it) belongs to."""
    if not idempotency_key or not idempotency_key.startswith(KEY_PREFIX):
        return None
    head = idempotency_key[len(KEY_PREFIX) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


def credit_note_key(row_key: str, credit_note_id: UUID) -> str:
    """The idempotency key of the request that makes our credit note in Stripe. It names the
    credit note, so the events that request causes (the refund it makes, which carries no
    metadata of ours) are recognised as ours by their ``request.idempotency_key``."""
    return f"{row_key}:credit_note:{credit_note_id}"


_CREDIT_NOTE_KEY = re.compile(
    re.escape(KEY_PREFIX) + r"\d+:credit_note:(?P<id>[0-9a-f]{8}-[0-9a-f-]{27})$"
)


def credit_note_of(idempotency_key: str | None) -> UUID | None:
    """Our credit note a request made by `credit_note_key` was about, or None."""
    match = _CREDIT_NOTE_KEY.match(idempotency_key or "")
    return UUID(match["id"]) if match else None


async def rows(
    *, status: str | None = None, merchant_id: UUID | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Outbox rows, oldest unsent first then newest sent (for ``billing outbox``)."""
    query = StripeOutbox.select().order_by(StripeOutbox.id).limit(limit)
    if status is not None:
        query = query.where(StripeOutbox.status == status)
    else:
        query = query.where(StripeOutbox.status.is_in(["pending", "in_flight", "parked"]))
    if merchant_id is not None:
        query = query.where(StripeOutbox.merchant_id == merchant_id)
    return await query


async def row(outbox_id: int) -> dict[str, Any] | None:
    return await StripeOutbox.select().where(StripeOutbox.id == outbox_id).first()


async def requeue(outbox_id: int, *, now: datetime) -> bool:
    """Put a parked row back in line (after the cause was fixed)."""
    found = await row(outbox_id)
    if found is None:
        return False
    updated = (
        await StripeOutbox.update(
            {
                StripeOutbox.status: "pending",
                StripeOutbox.next_attempt_at: now,
                StripeOutbox.last_error: None,
            }
        )
        .where(StripeOutbox.merchant_id == found["merchant_id"])
        .where(StripeOutbox.id == outbox_id)
        .where(StripeOutbox.status == "parked")
        .returning(StripeOutbox.id)
    )
    return bool(updated)


# A parked row only: one that is pending may be sent meanwhile, one in flight is being sent.
_SKIP = """
UPDATE stripe_outbox SET status = 'skipped', resolution = $3, resolved_at = $4
WHERE merchant_id = $1 AND id = $2 AND status = 'parked'
RETURNING id, command, payload, last_error, stripe_ids
"""


async def skip(outbox_id: int, *, reason: str, actor: Actor, now: datetime) -> bool:
    """Never send a parked row (what it was to do is done otherwise, or not at all): the row is
    marked skipped with ``reason``, and the rows behind it go on. Audited."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a skip needs a reason")
    found = await row(outbox_id)
    if found is None or found["status"] != "parked":
        return False
    database = current_database()
    async with database.engine.transaction():
        skipped = await transaction_connection().fetchrow(
            _SKIP, found["merchant_id"], outbox_id, reason, now
        )
        if skipped is None:
            return False
        await audit.record(
            actor,
            merchant_id=found["merchant_id"],
            entity="stripe_outbox",
            entity_id=str(outbox_id),
            action="skip",
            changes={
                "command": skipped["command"],
                "reason": reason,
                "last_error": skipped["last_error"],
                "stripe_ids": _json(skipped["stripe_ids"]),
            },
        )
    return True


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)
    return value
