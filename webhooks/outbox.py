"""Sending the Stripe outbox: one row at a time, in order per stream, never twice in effect.

A row is sent only when every earlier row of its stream has been sent, so any number of workers
keep a merchant's pushes in order (customer before invoice, invoice before its credit notes).
A row **parked** for a person (Stripe refused it) holds back only the later rows of its
*subject* (the same invoice; every row when it concerns the whole stream, like the customer's
creation): a refused credit note must not stop the next month's invoice from being collected,
but a credit note or a void must never overtake the push of its invoice. Parked rows stay
visible (``billing outbox``) with their reason and what they already made in Stripe, and a
person retries, skips (with a reason) or resolves them (`resolve`: record what exists in
Stripe, make nothing).
No database lock is held while Stripe is called: a row is **claimed** by one short statement
that marks it ``in_flight`` with a lease (``lease_until``) and commits; the worker then calls
Stripe with no transaction open; the outcome (the Stripe ids onto our rows, and the row marked
sent, retrying or parked) is recorded in a new short transaction. A worker that dies mid-push
leaves its row ``in_flight``; when the lease runs out any worker claims it again. Each Stripe
request carries an idempotency key made from the row id (and the step, for pushes of several
requests): the resend after a crash, a timeout or a lost lease is the same request, and Stripe
answers it without doing it again. Network errors, 429 and 5xx are retried with exponential
backoff and jitter across passes; any other 4xx parks the row (and the rows behind it in its
stream) until someone looks.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog

from plans.charges import FlatAddon, FlatFee
from service import stripe_outbox
from service.audit import log as audit
from service.catalog import store as catalog_store
from service.db.engine import current as current_database
from service.db.engine import is_unavailable as is_database_unavailable
from service.db.engine import transaction_connection
from service.db.tables import (
    CreditNote,
    Invoice,
    InvoiceLineRow,
    Merchant,
    Payment,
    StripeCatalogMap,
)
from service.outgoing import emit
from service.payments import links as payment_links
from service.payments import methods
from service.payments import terms as payment_terms
from service.stripe_outbox import Command, credit_note_key, enqueue
from service.subscriptions import clocks
from service.tenancy import stripe_owners
from service.tenancy.principal import Actor
from webhooks import records
from webhooks.gateway import (
    CardDeclined,
    Gateway,
    ReadOnlyGateway,
    StripeFailure,
    WouldWrite,
    id_of,
    metadata_of,
)

log = structlog.get_logger(__name__)

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 900.0
DEFAULT_LEASE = timedelta(minutes=5)
"""How long a claimed row stays with its worker (``STRIPE_OUTBOX_LEASE_SECONDS``)."""

KEY_WINDOW = timedelta(hours=23)
"""Stripe keeps an idempotency key for 24 hours. A row younger than this relies on its keys
alone; an older one may have sent requests whose keys Stripe has forgotten, so its push first
looks in Stripe for what it made before (see `_made_for`)."""


class NotReady(Exception):
    """What this push needs is not there yet (a payment Stripe has not reported): retry later."""


@dataclass
class SendSummary:
    sent: int = 0
    retrying: int = 0
    parked: int = 0
    errors: list[str] = field(default_factory=list)


Write = Callable[[], Awaitable[Any]]


@dataclass
class Claim:
    """A row this worker holds the lease of, and what its push will record once it is done."""

    id: int
    merchant_id: UUID | None
    command: str
    payload: dict[str, Any]
    key: str
    """The row's idempotency key; each step of a push adds its own suffix."""
    attempts: int
    """This attempt's number: it fences the record (a row reclaimed after its lease ran out
    belongs to the newer attempt)."""
    looks_back: bool
    """The row is older than `KEY_WINDOW`: look in Stripe for what an earlier attempt made."""
    now: datetime
    """The worker's time of this attempt (a payment-setup link its record makes counts from
    it)."""
    is_resolving: bool = False
    """A person resolves the parked row: only find and record what exists (`resolve`)."""
    writes: list[Write] = field(default_factory=list)
    made: dict[str, str] = field(default_factory=dict)
    """Stripe objects this attempt made or found, by kind: kept on the row when it parks, so a
    person sees what exists in Stripe already."""

    def later(self, write: Write) -> None:
        """Record ``write`` (a statement about what Stripe did) with the outcome, in one
        transaction: a push that fails halfway records nothing."""
        self.writes.append(write)

    def saw(self, kind: str, stripe_id: str) -> None:
        """Note a Stripe object this push made or found (shown with the row if it parks)."""
        self.made[kind] = stripe_id

    @property
    def may_have_made(self) -> bool:
        """Whether an earlier attempt may have made something its keys no longer cover, or a
        person resolves the row: then look in Stripe first. (Where making a thing twice would
        move money twice, a credit note's push also looks on any attempt after the first.)"""
        return self.looks_back or self.is_resolving


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full-range jitter: 2 s, 4 s, 8 s ... capped at 15 minutes,
    each drawn between half and the whole of it so that workers do not retry in step."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=ceiling * (0.5 + 0.5 * (rng or random).random()))


# Every statement below that touches one row names its merchant, so that on Citus it goes to one
# shard (catalog rows are the platform tenant's).
_THIS_ROW = "o.merchant_id = $1 AND o.id = $2"

_DUE = (
    "((o.status = 'pending' AND o.next_attempt_at <= {now})"
    " OR (o.status = 'in_flight' AND o.lease_until <= {now}))"
)

# Rows at the head of their stream that are due (or whose lease ran out), read without taking a
# lock. Raw SQL: the per-stream ordering condition is not something the ORM expresses.
# An earlier row holds ``o`` back while it is unsent — except a parked row of another subject
# (subject '' concerns the whole stream), and a pending row that such a parked row holds back
# itself (a row of the parked subject waits, the other subjects go on). Skipped and resolved
# rows are done, like sent ones. A stream is one merchant's (the catalog's: the platform
# tenant's), so the rows compared are joined on the merchant too: on Citus each shard answers
# for its own merchants and the coordinator merges the lists.
_CANDIDATES = f"""
SELECT o.merchant_id, o.id
FROM stripe_outbox o
WHERE {_DUE.format(now="$1")}
  AND ($2::uuid[] IS NULL OR o.merchant_id = ANY($2::uuid[])
       OR ($3::boolean AND o.stream = 'catalog'))
  AND NOT EXISTS (
      SELECT 1 FROM stripe_outbox earlier
      WHERE earlier.merchant_id = o.merchant_id AND earlier.stream = o.stream
        AND earlier.id < o.id
        AND earlier.status IN ('pending', 'in_flight', 'parked')
        AND CASE WHEN earlier.status = 'parked'
                 THEN earlier.subject IN (o.subject, '') OR o.subject = ''
                 ELSE NOT EXISTS (
                     SELECT 1 FROM stripe_outbox held
                     WHERE held.merchant_id = earlier.merchant_id
                       AND held.stream = earlier.stream AND held.id < earlier.id
                       AND held.status = 'parked' AND held.subject IN (earlier.subject, ''))
            END)
ORDER BY o.id
LIMIT $4
"""

# One statement, committed at once: the row is ours until the lease runs out. A row another
# worker claimed since it was read no longer matches (READ COMMITTED re-checks the condition
# after waiting for that worker's statement). Nothing earlier in the stream needs checking
# again: rows only ever join a stream at its end, and an unsent row never becomes unsent anew.
_CLAIM = f"""
UPDATE stripe_outbox o SET status = 'in_flight', lease_until = $4, attempts = o.attempts + 1
WHERE {_THIS_ROW} AND {_DUE.format(now="$3")}
RETURNING o.merchant_id, o.id, o.command, o.payload, o.idempotency_key, o.attempts,
    o.created_at
"""

_MARK_SENT = f"""
UPDATE stripe_outbox o SET status = 'sent', sent_at = $4, lease_until = NULL, last_error = NULL,
    stripe_ids = $5::jsonb
WHERE {_THIS_ROW} AND o.status = 'in_flight' AND o.attempts = $3
RETURNING o.id
"""

_MARK_FAILED = f"""
UPDATE stripe_outbox o SET status = $4, lease_until = NULL, next_attempt_at = $5,
    last_error = $6, stripe_ids = o.stripe_ids || $7::jsonb
WHERE {_THIS_ROW} AND o.status = 'in_flight' AND o.attempts = $3
"""

_CANDIDATE_BATCH = 20


async def send_pass(
    gateway: Gateway,
    *,
    now: datetime,
    merchant_ids: Sequence[UUID] | None = None,
    include_catalog: bool = False,
    limit: int = 500,
    should_stop: Callable[[], bool] | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> SendSummary:
    """Send due rows until none is ready (or ``limit``): every stream, or only the given
    merchants' (and the catalog's, with ``include_catalog``)."""
    summary = SendSummary()
    stop = should_stop or (lambda: False)
    ids = list(merchant_ids) if merchant_ids is not None else None
    for _ in range(limit):
        if stop():
            break
        outcome = await send_one(
            gateway, now=now, merchant_ids=ids, include_catalog=include_catalog, lease=lease
        )
        if outcome is None:
            break
        if outcome == "sent":
            summary.sent += 1
        elif outcome == "parked":
            summary.parked += 1
        else:
            summary.retrying += 1
    return summary


async def send_one(
    gateway: Gateway,
    *,
    now: datetime,
    merchant_ids: list[UUID] | None = None,
    include_catalog: bool = False,
    lease: timedelta = DEFAULT_LEASE,
) -> str | None:
    """Claim and send one row: ``sent``, ``retrying``, ``parked``, or None if nothing is due."""
    claim = await _claim_next(now, merchant_ids, include_catalog, lease)
    if claim is None:
        return None
    try:
        push = _COMMANDS[Command(claim.command)]
        stripe_ids = await push(gateway, claim, claim.payload)  # no transaction is open here
        is_recorded = await _record_sent(claim, stripe_ids, now=now)
    except (StripeFailure, NotReady) as error:
        is_transient = isinstance(error, NotReady) or (
            isinstance(error, StripeFailure) and error.is_transient
        )
        return await _record_failure(claim, error, is_transient=is_transient, now=now)
    except Exception as error:  # our own bug or a database hiccup: kept, retried, visible
        if is_database_unavailable(error):
            # PostgreSQL went away mid-push: nothing can be recorded now. The row stays in
            # flight until its lease ends and is sent again with the same keys; the worker
            # backs off meanwhile.
            raise
        log.exception("stripe_outbox_error", outbox_id=claim.id, command=claim.command)
        return await _record_failure(claim, error, is_transient=True, now=now)
    if not is_recorded:
        return "retrying"  # another worker holds the row now; its attempt records
    log.info("stripe_outbox_sent", outbox_id=claim.id, command=claim.command, stripe_ids=stripe_ids)
    return "sent"


async def _claim_next(
    now: datetime, merchant_ids: list[UUID] | None, include_catalog: bool, lease: timedelta
) -> Claim | None:
    """The first candidate this worker manages to claim, or None when none is left."""
    pool = current_database().pool
    candidates = await pool.fetch(_CANDIDATES, now, merchant_ids, include_catalog, _CANDIDATE_BATCH)
    for candidate in candidates:
        row = await pool.fetchrow(
            _CLAIM, candidate["merchant_id"], candidate["id"], now, now + lease
        )
        if row is not None:
            return Claim(
                id=row["id"],
                merchant_id=row["merchant_id"],
                command=row["command"],
                payload=_json(row["payload"]),
                key=row["idempotency_key"],
                attempts=row["attempts"],
                looks_back=now - row["created_at"] >= KEY_WINDOW,
                now=now,
            )
    return None


async def _record_sent(claim: Claim, stripe_ids: dict[str, Any], *, now: datetime) -> bool:
    """What the push learnt and the row marked sent, together; False (nothing written) when the
    lease ran out and another worker claimed the row meanwhile: its attempt records."""
    async with current_database().engine.transaction():
        marked = await transaction_connection().fetchval(
            _MARK_SENT,
            claim.merchant_id,
            claim.id,
            claim.attempts,
            now,
            msgspec.json.encode(stripe_ids).decode(),
        )
        if marked is None:
            log.warning("stripe_outbox_lease_lost", outbox_id=claim.id, command=claim.command)
            return False
        for write in claim.writes:
            await write()
    return True


async def _record_failure(
    claim: Claim, error: Exception, *, is_transient: bool, now: datetime
) -> str:
    status = "pending" if is_transient else "parked"
    next_at = now + backoff(claim.attempts) if is_transient else now
    await current_database().pool.execute(
        _MARK_FAILED,
        claim.merchant_id,
        claim.id,
        claim.attempts,
        status,
        next_at,
        str(error)[:2000],
        msgspec.json.encode(claim.made).decode(),
    )
    if is_transient:
        log.warning(
            "stripe_outbox_retry",
            outbox_id=claim.id,
            command=claim.command,
            attempts=claim.attempts,
            next_attempt_at=next_at.isoformat(),
            error=str(error),
        )
        return "retrying"
    log.error(
        "stripe_outbox_parked",
        outbox_id=claim.id,
        command=claim.command,
        error=str(error),
        made_in_stripe=claim.made,
    )
    return "parked"


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)  # type: ignore[no-any-return]
    return dict(value)


# -- a person resolves a parked row --------------------------------------------------------

_CLAIM_PARKED = f"""
UPDATE stripe_outbox o SET status = 'in_flight', lease_until = $3, attempts = o.attempts + 1
WHERE {_THIS_ROW} AND o.status = 'parked'
RETURNING o.merchant_id, o.id, o.command, o.payload, o.idempotency_key, o.attempts,
    o.created_at
"""

_MARK_RESOLVED = f"""
UPDATE stripe_outbox o SET status = 'resolved', resolved_at = $4, resolution = $5,
    lease_until = NULL, stripe_ids = o.stripe_ids || $6::jsonb
WHERE {_THIS_ROW} AND o.status = 'in_flight' AND o.attempts = $3
RETURNING o.id
"""

_PARK_AGAIN = f"""
UPDATE stripe_outbox o SET status = 'parked', lease_until = NULL
WHERE {_THIS_ROW} AND o.status = 'in_flight' AND o.attempts = $3
"""


class NotResolved(Exception):
    """Resolving a parked row found nothing to record; the row stays parked."""


async def resolve(
    gateway: Gateway,
    outbox_id: int,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
    lease: timedelta = DEFAULT_LEASE,
) -> dict[str, Any]:
    """A person says a parked row's work is done in Stripe (by hand in the dashboard, or by an
    earlier attempt): its push runs once more reading Stripe only — it looks for what the row
    was to make, by our ids in the metadata, and records it here, but makes nothing — then the
    row is ``resolved`` with ``reason``, audited. When Stripe lacks something the push needs,
    nothing is recorded, the row stays parked, and `NotResolved` says what is missing."""
    reason = reason.strip()
    if not reason:
        raise ValueError("resolving a row needs a reason")
    found = await stripe_outbox.row(outbox_id)
    if found is None or found["status"] != "parked":
        raise NotResolved(f"outbox row {outbox_id} is not parked")
    pool = current_database().pool
    claimed = await pool.fetchrow(_CLAIM_PARKED, found["merchant_id"], outbox_id, now + lease)
    if claimed is None:
        raise NotResolved(f"outbox row {outbox_id} is not parked")
    claim = Claim(
        id=claimed["id"],
        merchant_id=claimed["merchant_id"],
        command=claimed["command"],
        payload=_json(claimed["payload"]),
        key=claimed["idempotency_key"],
        attempts=claimed["attempts"],
        looks_back=True,
        now=now,
        is_resolving=True,
    )
    try:
        push = _COMMANDS[Command(claim.command)]
        stripe_ids = await push(ReadOnlyGateway(gateway.client), claim, claim.payload)
    except (WouldWrite, StripeFailure, NotReady) as error:
        await pool.execute(_PARK_AGAIN, claim.merchant_id, claim.id, claim.attempts)
        if isinstance(error, WouldWrite):
            raise NotResolved(
                f"Stripe does not have what outbox row {outbox_id} ({claim.command}) was to"
                f" make (it would call {error}); resolving records only what exists. Make it in"
                f" Stripe with our ids in its metadata, `billing outbox retry {outbox_id}`, or"
                f" `billing outbox skip {outbox_id} --reason ...`"
            ) from error
        raise NotResolved(f"outbox row {outbox_id} ({claim.command}): {error}") from error
    async with current_database().engine.transaction():
        marked = await transaction_connection().fetchval(
            _MARK_RESOLVED,
            claim.merchant_id,
            claim.id,
            claim.attempts,
            now,
            reason,
            msgspec.json.encode({**claim.made, **stripe_ids}).decode(),
        )
        if marked is None:
            raise NotResolved(f"outbox row {outbox_id} was taken by a worker meanwhile")
        for write in claim.writes:
            await write()
        await audit.record(
            actor,
            merchant_id=claim.merchant_id,
            entity="stripe_outbox",
            entity_id=str(claim.id),
            action="resolve",
            changes={
                "command": claim.command,
                "reason": reason,
                "last_error": found["last_error"],
                "recorded": {**claim.made, **stripe_ids},
            },
        )
    log.info("stripe_outbox_resolved", outbox_id=claim.id, command=claim.command)
    return stripe_ids


# -- the pushes --------------------------------------------------------------------------------

Push = Callable[[Gateway, Claim, dict[str, Any]], Awaitable[dict[str, Any]]]
"""A push reads our rows and calls Stripe; what it learns goes into ``claim.later``."""


async def _ensure_customer(gateway: Gateway, claim: Claim, merchant_id: UUID) -> str:
    merchant = await Merchant.objects().where(Merchant.id == merchant_id).first()
    if merchant is None:
        raise StripeFailure(
            f"merchant {merchant_id} is gone", is_transient=False, status=None, code=None
        )
    if merchant.stripe_customer_id:
        return merchant.stripe_customer_id
    customer = await _made_before(
        gateway,
        claim.may_have_made,
        gateway.client.v1.customers.list,
        {"kefu_merchant_id": str(merchant.id)},
        email=merchant.contact_email,
    )
    if customer is None:
        customer = await gateway.call(
            gateway.client.v1.customers.create,
            key=f"{claim.key}:customer",
            name=merchant.name,
            email=merchant.contact_email,
            metadata={"kefu_merchant_id": str(merchant.id)},
        )
    customer_id = str(customer.id)

    async def write() -> None:
        await Merchant.update({Merchant.stripe_customer_id: customer_id}).where(
            Merchant.id == merchant_id
        )
        await stripe_owners.remember(merchant_id, customer=customer_id)

    claim.later(write)
    return customer_id


async def _customer_create(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    customer_id = await _ensure_customer(gateway, claim, _merchant_of(claim))
    return {"customer": customer_id}


async def _customer_update(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    merchant_id = _merchant_of(claim)
    customer_id = await _ensure_customer(gateway, claim, merchant_id)
    merchant = await Merchant.objects().where(Merchant.id == merchant_id).first()
    assert merchant is not None
    await gateway.call(
        gateway.client.v1.customers.update,
        customer_id,
        key=f"{claim.key}:update",
        name=merchant.name,
        email=merchant.contact_email,
    )
    return {"customer": customer_id}


async def _catalog_plan(gateway: Gateway, claim: Claim, payload: dict[str, Any]) -> dict[str, Any]:
    """A plan version's product and monthly fee price, and a product (and price, when flat)
    for each of its add-ons; items already mapped are left alone."""
    plan = await catalog_store.plan_version(payload["code"], int(payload["version"]))
    fee = sum(c.amount_minor for c in plan.charges if isinstance(c, FlatFee))
    ids: dict[str, Any] = {}
    items: list[tuple[str, str, int, str, int | None]] = [
        ("plan", plan.code, plan.version, f"{plan.name} (v{plan.version})", fee or None)
    ]
    for addon in plan.addons:
        amount = addon.charge.amount_minor if isinstance(addon.charge, FlatAddon) else None
        items.append(("addon", addon.code, addon.version, addon.name, amount))
    key = claim.key
    for kind, code, version, name, amount in items:
        exists = await StripeCatalogMap.exists().where(
            (StripeCatalogMap.item_kind == kind)
            & (StripeCatalogMap.code == code)
            & (StripeCatalogMap.version == version)
        )
        if exists:
            continue
        step = f"{key}:{kind}:{code}:{version}"
        metadata = {"kefu_item": kind, "kefu_code": code, "kefu_version": str(version)}
        product = await gateway.call(
            gateway.client.v1.products.create,
            key=f"{step}:product",
            name=name,
            metadata=metadata,
        )
        price_id = None
        if amount:
            price = await gateway.call(
                gateway.client.v1.prices.create,
                key=f"{step}:price",
                product=product.id,
                currency=plan.currency.lower(),
                unit_amount=amount,
                recurring={"interval": "month"},
                metadata=metadata,
            )
            price_id = price.id
        claim.later(
            _catalog_mapping(kind, code, version, product.id, price_id, amount, plan.currency)
        )
        ids[f"{kind}:{code}:{version}"] = {"product": product.id, "price": price_id}
    return ids


def _catalog_mapping(*values: Any) -> Write:
    def write() -> Any:
        return StripeCatalogMap.raw(
            "INSERT INTO stripe_catalog_map (item_kind, code, version, stripe_product_id,"
            " stripe_price_id, unit_amount_minor, currency) VALUES ({}, {}, {}, {}, {}, {}, {})"
            " ON CONFLICT (item_kind, code, version) DO NOTHING",
            *values,
        )

    return write


def _merchant_of(claim: Claim) -> UUID:
    if claim.merchant_id is None:
        raise StripeFailure(
            f"{claim.command} needs a merchant", is_transient=False, status=None, code=None
        )
    return claim.merchant_id


async def _invoice_of(claim: Claim, payload: dict[str, Any]) -> Invoice | None:
    return await (
        Invoice.objects()
        .where(Invoice.merchant_id == _merchant_of(claim))
        .where(Invoice.id == UUID(payload["invoice_id"]))
        .first()
    )


async def _invoice_push(gateway: Gateway, claim: Claim, payload: dict[str, Any]) -> dict[str, Any]:
    """Create (auto_advance off), one item per line with our line id, tax as its own item,
    finalize, then collect: charged to the merchant's saved card, or — no card saved yet, or
    terms that send every invoice — sent (``send_invoice`` with its days until due; Stripe's
    hosted page is the payment link). What an earlier attempt already made in Stripe (found by
    our ids in its metadata) is taken as it is, not made again. A declined card is not a failed
    push: Stripe says so with ``invoice.payment_failed``, which dunning handles."""
    key = claim.key
    invoice = await _invoice_of(claim, payload)
    if invoice is None:
        raise StripeFailure("invoice is gone", is_transient=False, status=None, code=None)
    if invoice.status == "void" and invoice.stripe_invoice_id is None:
        return {"invoice": None, "skipped": "voided before it was pushed"}
    customer_id = await _ensure_customer(gateway, claim, invoice.merchant_id)
    collection = await _collection_of(invoice)
    v1 = gateway.client.v1
    metadata = {
        "kefu_invoice_id": str(invoice.id),
        "kefu_merchant_id": str(invoice.merchant_id),
        "kefu_number": invoice.number or "",
    }
    # A retry may decide another collection than the attempt before (a card saved meanwhile):
    # it looks first for what that attempt made, whose collection then stands.
    stripe_invoice = await _made_before(
        gateway,
        claim.may_have_made or claim.attempts > 1,
        v1.invoices.list,
        {"kefu_invoice_id": str(invoice.id)},
        customer=customer_id,
    )
    on_stripe: set[str] = set()  # our line ids that are items of it already
    if stripe_invoice is not None:
        items_there = await gateway.list_all(v1.invoice_items.list, invoice=stripe_invoice.id)
        on_stripe = {metadata_of(item).get("kefu_line_id", "") for item in items_there}
    else:
        terms_params: dict[str, Any] = {"collection_method": collection.method}
        create_key = f"{key}:create"
        if collection.method == payment_terms.SEND:
            terms_params["days_until_due"] = collection.days_until_due
            create_key = f"{key}:create:send:{collection.days_until_due}"
        stripe_invoice = await gateway.call(
            v1.invoices.create,
            key=create_key,
            customer=customer_id,
            currency=invoice.currency.lower(),
            auto_advance=False,
            description=f"Kefu invoice {invoice.number}",
            metadata=metadata,
            **terms_params,
        )
    claim.later(_invoice_update(invoice, {Invoice.stripe_invoice_id: stripe_invoice.id}))
    lines = (
        await InvoiceLineRow.select(
            InvoiceLineRow.id,
            InvoiceLineRow.position,
            InvoiceLineRow.description,
            InvoiceLineRow.amount_minor,
        )
        .where(InvoiceLineRow.merchant_id == invoice.merchant_id)
        .where(InvoiceLineRow.invoice_id == invoice.id)
        .order_by(InvoiceLineRow.position)
    )
    items = [
        (f"line-{line['position']}", line["description"], line["amount_minor"], str(line["id"]))
        for line in lines
        if line["amount_minor"] != 0
    ]
    if invoice.tax_minor:
        items.append(("tax", f"Tax {invoice.tax_rate}", invoice.tax_minor, "tax"))
    for step, description, amount, line_id in items:
        if line_id in on_stripe:
            continue
        await gateway.call(
            v1.invoice_items.create,
            key=f"{key}:{step}",
            invoice=stripe_invoice.id,
            customer=customer_id,
            amount=amount,
            currency=invoice.currency.lower(),
            description=description[:500],
            metadata={"kefu_line_id": line_id, **metadata},
        )
    finalized = stripe_invoice
    if stripe_invoice.status == "draft":
        finalized = await gateway.call(
            v1.invoices.finalize_invoice,
            stripe_invoice.id,
            key=f"{key}:finalize",
            auto_advance=False,
        )
    claim.later(
        _invoice_update(
            invoice,
            {
                Invoice.stripe_number: finalized.number,
                Invoice.hosted_invoice_url: finalized.hosted_invoice_url,
            },
        )
    )
    if finalized.collection_method != collection.method:  # an earlier attempt's stands
        collection = (
            await _collection_of(invoice, default_payment_method_id=None)
            if finalized.collection_method == payment_terms.SEND
            else payment_terms.Collection(
                method=payment_terms.CHARGE, days_until_due=None, awaits_payment_method=False
            )
        )
    if finalized.status == "open":
        finalized = await _credit_before_payment(gateway, claim, invoice, finalized)
    if invoice.status == "void":  # voided meanwhile: its void row, next in line, voids it
        return {"invoice": stripe_invoice.id, "collection": "skipped (void)"}
    if finalized.status != "open":
        claim.later(_collection_record(invoice, collection, awaits=False, now=claim.now))
        return {"invoice": stripe_invoice.id, "collection": f"skipped ({finalized.status})"}
    if collection.method == payment_terms.SEND:
        if not claim.is_resolving:  # an email to the merchant: resolving records, sends nothing
            await gateway.call(v1.invoices.send_invoice, stripe_invoice.id, key=f"{key}:send")
        claim.later(
            _collection_record(
                invoice, collection, awaits=collection.awaits_payment_method, now=claim.now
            )
        )
        return {"invoice": stripe_invoice.id, "collection": "sent"}
    outcome = await _collect(gateway, stripe_invoice.id, key=f"{key}:pay")
    if outcome == NO_WAY_TO_PAY:  # the card went between our record and Stripe
        waiting = await _collection_of(invoice, default_payment_method_id=None)
        claim.later(
            _collection_record(
                invoice,
                payment_terms.Collection(
                    method=payment_terms.CHARGE,
                    days_until_due=waiting.days_until_due,
                    awaits_payment_method=True,
                ),
                awaits=True,
                now=claim.now,
            )
        )
    else:
        claim.later(_collection_record(invoice, collection, awaits=False, now=claim.now))
    return {"invoice": stripe_invoice.id, "collection": outcome}


_UNSET: Any = object()


async def _collection_of(
    invoice: Invoice, *, default_payment_method_id: str | None = _UNSET
) -> payment_terms.Collection:
    """How this invoice is collected: the merchant's terms, the card on file, the plan's days."""
    merchant = await Merchant.objects().where(Merchant.id == invoice.merchant_id).first()
    if merchant is None:
        raise StripeFailure("merchant is gone", is_transient=False, status=None, code=None)
    plan = await catalog_store.plan_version(invoice.plan_code, invoice.plan_version)
    if default_payment_method_id is _UNSET:
        default_payment_method_id = merchant.default_payment_method_id
    return payment_terms.collection_for(
        invoice_collection=merchant.invoice_collection,
        merchant_days=merchant.days_until_due,
        plan=plan,
        default_payment_method_id=default_payment_method_id,
    )


def _collection_record(
    invoice: Invoice, collection: payment_terms.Collection, *, awaits: bool, now: datetime
) -> Write:
    """How the invoice is collected, recorded with the push. An invoice sent because no way to
    pay was on file tells the platform (``payment_method.required``, with a new payment-setup
    link) — unless a card was saved while the push ran: then it is paid with that card. The
    merchant's row is locked meanwhile, so a card's arrival (``customer.updated``) and this
    record take turns and neither misses the other."""
    issued_at = invoice.finalized_at or invoice.created_at
    due_at = collection.due_at(issued_at)  # sent, or a charge waiting for a card: it has days

    async def write() -> None:
        await Invoice.update(
            {
                Invoice.collection_method: collection.method,
                Invoice.due_at: due_at,
                Invoice.awaits_payment_method: awaits,
            }
        ).where((Invoice.merchant_id == invoice.merchant_id) & (Invoice.id == invoice.id))
        if not awaits:
            return
        record = await methods.lock_merchant(invoice.merchant_id)
        saved = record["default_payment_method_id"] if record is not None else None
        if saved is not None:
            await enqueue(
                invoice.merchant_id,
                Command.INVOICE_RETRY_PAYMENT,
                {"invoice_id": str(invoice.id), "payment_method": saved},
            )
            return
        link = await payment_links.issue(invoice.merchant_id, now=now)
        merchant_now = (await clocks.clock_for_merchant(invoice.merchant_id)).now()
        await emit.payment_method_required(
            invoice.merchant_id,
            at=merchant_now,
            reason="invoice_sent_without_payment_method",
            invoice_id=invoice.id,
            setup_url=link.url,
        )
        log.info(
            "invoice_sent_without_payment_method",
            invoice_id=str(invoice.id),
            merchant_id=str(invoice.merchant_id),
        )

    return write


def _invoice_update(invoice: Invoice, values: dict[Any, Any]) -> Write:
    def write() -> Any:
        return Invoice.update(values).where(
            (Invoice.merchant_id == invoice.merchant_id) & (Invoice.id == invoice.id)
        )

    return write


def _credit_note_update(note: CreditNote, values: dict[Any, Any]) -> Write:
    def write() -> Any:
        return CreditNote.update(values).where(
            (CreditNote.merchant_id == note.merchant_id) & (CreditNote.id == note.id)
        )

    return write


async def _credit_before_payment(
    gateway: Gateway, claim: Claim, invoice: Invoice, stripe_invoice: Any
) -> Any:
    """Credit notes we issued while the invoice waited for its push lower what Stripe collects:
    each becomes a Stripe credit note before payment, rather than a charge then a refund. Its
    own push later finds it by its tag and does nothing more. The Stripe invoice, as it is now.
    """
    notes = (
        await CreditNote.objects()
        .where(CreditNote.merchant_id == invoice.merchant_id)
        .where(CreditNote.invoice_id == invoice.id)
        .where(CreditNote.kind == "pre_payment")
        .order_by(CreditNote.created_at)
    )
    if not notes:
        return stripe_invoice
    v1 = gateway.client.v1
    made = (
        await gateway.list_all(v1.credit_notes.list, invoice=stripe_invoice.id)
        if claim.may_have_made
        else []
    )
    for note in notes:
        stripe_note = _made_for(made, {"kefu_credit_note_id": str(note.id)})
        if stripe_note is None:
            stripe_note = await _make_credit_note(
                gateway,
                note,
                invoice,
                stripe_invoice.id,
                key=credit_note_key(claim.key, note.id),
            )
        claim.later(_credit_note_update(note, {CreditNote.stripe_credit_note_id: stripe_note.id}))
    return await gateway.retrieve(v1.invoices.retrieve, stripe_invoice.id)


async def _made_before(
    gateway: Gateway, look: bool, listing: Callable[..., Any], tags: dict[str, str], **filters: Any
) -> Any | None:
    """What an earlier attempt made, from Stripe's ``listing`` (see `_made_for`); None without
    asking when ``look`` is false (the row is inside `KEY_WINDOW`: its keys are enough)."""
    if not look:
        return None
    return _made_for(await gateway.list_all(listing, **filters), tags)


def _made_for(candidates: Sequence[Any], tags: dict[str, str]) -> Any | None:
    """The Stripe object an earlier attempt made for our row: the one tagged with ``tags`` in
    its metadata.

    Every request of a push carries an idempotency key, which makes a retry safe by itself
    only while Stripe keeps the key: 24 hours. A push of a row older than `KEY_WINDOW` (a
    worker down for a day, Stripe down for longer) first looks for what it made before, so it
    never makes it twice; younger rows skip the lookups and their cost.
    """
    return next(
        (
            obj
            for obj in candidates
            if tags.items() <= metadata_of(obj).items()
            and getattr(obj, "status", None) not in _DEAD
        ),
        None,
    )


_DEAD = frozenset({"void", "failed", "canceled"})
"""Statuses of a Stripe object that no longer does what it was made for (a void invoice or
credit note, a failed or canceled refund): never taken as the earlier attempt's."""


NO_WAY_TO_PAY = "no payment method"
"""A collection outcome: Stripe had nothing to charge (no default card, or the card named is
not the customer's). Not a failed payment: the invoice waits for a way to pay, undunned."""


async def _collect(
    gateway: Gateway, stripe_invoice_id: str, *, key: str, payment_method: str | None = None
) -> str:
    """Ask Stripe to collect an open invoice (with ``payment_method``, or the customer's
    default card): its status after, ``declined``, or `NO_WAY_TO_PAY`. Stripe refuses to pay an
    invoice that is no longer open (paid meanwhile, voided in the dashboard) with a plain 400
    and no code to tell it by: then the invoice is read, and a closed one is no failure of
    ours."""
    v1 = gateway.client.v1
    params = {"payment_method": payment_method} if payment_method else {}
    try:
        paid = await gateway.call(v1.invoices.pay, stripe_invoice_id, key=key, **params)
    except CardDeclined:
        return "declined"
    except StripeFailure as failure:
        if failure.is_transient:
            raise
        if failure.status == 400 and failure.code == "resource_missing":
            return NO_WAY_TO_PAY
        current = await gateway.retrieve(v1.invoices.retrieve, stripe_invoice_id)
        if current.status != "open":
            return f"skipped ({current.status})"
        raise
    return str(paid.status)


async def _invoice_retry_payment(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    invoice = await _invoice_of(claim, payload)
    if invoice is None or not invoice.stripe_invoice_id:
        raise StripeFailure("invoice not in Stripe", is_transient=False, status=None, code=None)
    if invoice.status != "open":
        return {"invoice": invoice.stripe_invoice_id, "collection": f"skipped ({invoice.status})"}
    outcome = await _collect(
        gateway,
        invoice.stripe_invoice_id,
        key=claim.key,
        payment_method=payload.get("payment_method"),
    )
    if outcome == NO_WAY_TO_PAY and not invoice.awaits_payment_method:
        # Nothing left to charge (the card was removed): the invoice waits for a way to pay,
        # due on our clock, and dunning counts it only once it is overdue.
        waiting = await _collection_of(invoice, default_payment_method_id=None)
        claim.later(
            _collection_record(
                invoice,
                payment_terms.Collection(
                    method=invoice.collection_method or payment_terms.CHARGE,
                    days_until_due=waiting.days_until_due,
                    awaits_payment_method=True,
                ),
                awaits=True,
                now=claim.now,
            )
        )
    return {"invoice": invoice.stripe_invoice_id, "collection": outcome}


async def _invoice_void(gateway: Gateway, claim: Claim, payload: dict[str, Any]) -> dict[str, Any]:
    invoice = await _invoice_of(claim, payload)
    if invoice is None or not invoice.stripe_invoice_id:
        return {"invoice": None}  # never pushed (nothing was due): nothing to void in Stripe
    current = await gateway.retrieve(gateway.client.v1.invoices.retrieve, invoice.stripe_invoice_id)
    if current.status != "void":
        await gateway.call(
            gateway.client.v1.invoices.void_invoice,
            invoice.stripe_invoice_id,
            key=claim.key,
        )
    return {"invoice": invoice.stripe_invoice_id}


_STRIPE_CREDIT_REASONS = {"duplicate": "duplicate"}


async def _credit_note_push(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    """Our credit note in Stripe. On an open invoice it lowers what is due. On a paid one the
    money goes back in the **same request**: a Stripe credit note with ``refund_amount`` makes
    the refund and the credit note together or neither, so a refusal can strand no refund.

    A retry after an earlier attempt (or a row older than Stripe keeps keys, or a person
    resolving it) first looks in Stripe for what exists — the credit note, tagged with our ids,
    or a refund tagged so (made by the two-step push that came before) — and links or records it
    instead of making more. The refund made by the credit note carries no metadata of ours: its
    webhooks are recognised by their request's idempotency key, which names our credit note
    (``service.stripe_outbox.credit_note_key``)."""
    note = (
        await CreditNote.objects()
        .where(CreditNote.merchant_id == _merchant_of(claim))
        .where(CreditNote.id == UUID(payload["credit_note_id"]))
        .first()
    )
    if note is None:
        raise StripeFailure("credit note is gone", is_transient=False, status=None, code=None)
    if note.reason == "stripe_refund":
        return {"credit_note": None}  # made from a Stripe refund: Stripe has it already
    invoice = (
        await Invoice.objects()
        .where(Invoice.merchant_id == note.merchant_id)
        .where(Invoice.id == note.invoice_id)
        .first()
    )
    assert invoice is not None
    if not invoice.stripe_invoice_id:
        return {"credit_note": None}  # the invoice was never pushed (nothing was due)
    if note.stripe_credit_note_id:  # credited before payment by the invoice's own push
        return {"credit_note": note.stripe_credit_note_id, "refund": note.stripe_refund_id}
    v1 = gateway.client.v1
    tags = _credit_note_tags(note, invoice)
    looks = claim.may_have_made or claim.attempts > 1
    stripe_note = await _made_before(
        gateway,
        looks,
        v1.credit_notes.list,
        {"kefu_credit_note_id": str(note.id)},
        invoice=invoice.stripe_invoice_id,
        expand=["data.refunds.refund"],
    )
    refund: Any = None
    if stripe_note is None:
        stripe_invoice = await gateway.retrieve(
            v1.invoices.retrieve, invoice.stripe_invoice_id, expand=["payments"]
        )
        if stripe_invoice.status == "paid":
            payment_intent = records.payment_intent_of(stripe_invoice)
            if payment_intent is None:
                raise StripeFailure(
                    f"Stripe invoice {stripe_invoice.id} was paid outside Stripe, so Stripe has"
                    " nothing to refund: give the money back outside Stripe, then `billing"
                    f" outbox skip {claim.id} --reason ...`",
                    is_transient=False,
                    status=None,
                    code=None,
                )
            refund = await _made_before(
                gateway, looks, v1.refunds.list, tags, payment_intent=payment_intent
            )
            if refund is not None:
                claim.saw("refund", refund.id)
        elif stripe_invoice.status != "open":
            raise StripeFailure(
                f"Stripe invoice {stripe_invoice.id} is {stripe_invoice.status}: Stripe takes no"
                " credit note on it. Settle it there, then `billing outbox resolve` or `skip`"
                f" {claim.id}",
                is_transient=False,
                status=None,
                code=None,
            )
        if claim.is_resolving and refund is not None:
            # Done by hand: the money went back; record it, make no credit note now.
            claim.later(_refund_record(note, invoice, refund))
            claim.later(_credit_note_update(note, {CreditNote.stripe_refund_id: refund.id}))
            return {"credit_note": None, "refund": refund.id}
        refunding = stripe_invoice.status == "paid"
        stripe_note = await _make_credit_note(
            gateway,
            note,
            invoice,
            invoice.stripe_invoice_id,
            key=credit_note_key(claim.key, note.id),
            refunds=[{"refund": refund.id, "amount_refunded": note.amount_minor}]
            if refund is not None
            else (),
            refund_amount=note.amount_minor if refunding and refund is None else None,
        )
    claim.saw("credit_note", stripe_note.id)
    if refund is None:
        refund = next(
            (item.refund for item in stripe_note.refunds or () if not isinstance(item.refund, str)),
            None,
        )
    if refund is not None:
        claim.saw("refund", refund.id)
        claim.later(_refund_record(note, invoice, refund))
    refund_id = refund.id if refund is not None else None
    claim.later(
        _credit_note_update(
            note,
            {
                CreditNote.stripe_credit_note_id: stripe_note.id,
                CreditNote.stripe_refund_id: refund_id,
            },
        )
    )
    return {"credit_note": stripe_note.id, "refund": refund_id}


def _refund_record(note: CreditNote, invoice: Invoice, refund: Any) -> Write:
    def write() -> Awaitable[bool]:
        return records.record_refund(
            merchant_id=invoice.merchant_id,
            invoice_id=invoice.id,
            credit_note_id=note.id,
            amount_minor=note.amount_minor,
            currency=invoice.currency,
            status=str(refund.status),
            stripe_refund_id=refund.id,
            origin="credit_note",
            at=records.at(refund.created),
        )

    return write


def _credit_note_tags(note: CreditNote, invoice: Invoice) -> dict[str, str]:
    """The metadata naming our credit note on what Stripe makes for it."""
    return {
        "kefu_credit_note_id": str(note.id),
        "kefu_invoice_id": str(invoice.id),
        "kefu_merchant_id": str(invoice.merchant_id),
    }


async def _make_credit_note(
    gateway: Gateway,
    note: CreditNote,
    invoice: Invoice,
    stripe_invoice_id: str,
    *,
    key: str,
    refunds: Sequence[dict[str, Any]] = (),
    refund_amount: int | None = None,
) -> Any:
    """Our credit note as a Stripe credit note on ``stripe_invoice_id``: linking ``refunds``
    that exist, or making a refund of ``refund_amount`` with it (the refund comes back
    expanded)."""
    params: dict[str, Any] = {}
    if note.reason in _STRIPE_CREDIT_REASONS:
        params["reason"] = _STRIPE_CREDIT_REASONS[note.reason]
    if note.memo:
        params["memo"] = note.memo[:500]
    if refunds:
        params["refunds"] = list(refunds)
    if refund_amount is not None:
        params["refund_amount"] = refund_amount
    if refunds or refund_amount is not None:
        params["expand"] = ["refunds.refund"]
    return await gateway.call(
        gateway.client.v1.credit_notes.create,
        key=key,
        invoice=stripe_invoice_id,
        amount=note.amount_minor,
        # Stripe's reasons are its own four; ours (credit_balance, sla_credit, ...) rides along.
        metadata={**_credit_note_tags(note, invoice), "kefu_reason": note.reason},
        **params,
    )


async def _payment_lookup(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    """Which payment intent, and which charge of it, paid an invoice: ``invoice.paid`` webhooks
    do not carry them (``Invoice.payments`` is includable, and events are never expanded).
    One read with a nested expansion; the charge is the payment intent's latest charge."""
    merchant_id = _merchant_of(claim)
    invoice_id = UUID(payload["invoice_id"])
    payment = (
        await Payment.objects()
        .where(Payment.merchant_id == merchant_id)
        .where(Payment.invoice_id == invoice_id)
        .first()
    )
    if payment is None:
        raise NotReady(f"no payment recorded for invoice {invoice_id} yet")
    if payment.stripe_payment_intent_id and payment.stripe_charge_id:
        return {"payment_intent": payment.stripe_payment_intent_id}
    stripe_invoice = await gateway.retrieve(
        gateway.client.v1.invoices.retrieve,
        payment.stripe_invoice_id,
        expand=["payments.data.payment.payment_intent"],
    )
    found = records.payment_of(stripe_invoice)
    if found is None:
        return {"payment_intent": None}  # paid outside Stripe: no charge to name
    intent_id, charge_id = found
    claim.later(_payment_update(merchant_id, invoice_id, intent_id, charge_id))
    return {"payment_intent": intent_id, "charge": charge_id}


def _payment_update(
    merchant_id: UUID, invoice_id: UUID, intent_id: str, charge_id: str | None
) -> Write:
    async def write() -> None:
        await Payment.raw(
            "UPDATE payments SET stripe_payment_intent_id = coalesce(stripe_payment_intent_id,"
            " {}), stripe_charge_id = coalesce(stripe_charge_id, {})"
            " WHERE merchant_id = {} AND invoice_id = {}",
            intent_id,
            charge_id,
            merchant_id,
            invoice_id,
        )
        await stripe_owners.remember(merchant_id, payment_intent=intent_id, charge=charge_id)

    return write


async def _payment_method_set_default(
    gateway: Gateway, claim: Claim, payload: dict[str, Any]
) -> dict[str, Any]:
    """The card a Checkout Session (setup mode) saved becomes the card the customer's invoices
    are paid with: read from the SetupIntent, set as ``invoice_settings.default_payment_method``.
    Stripe's ``customer.updated`` then tells us (``handlers.payment_methods``)."""
    merchant = await Merchant.objects().where(Merchant.id == _merchant_of(claim)).first()
    if merchant is None or not merchant.stripe_customer_id:
        raise NotReady("the merchant's Stripe customer is not recorded yet")
    v1 = gateway.client.v1
    intent = await gateway.retrieve(v1.setup_intents.retrieve, payload["setup_intent"])
    if intent.status != "succeeded" or not intent.payment_method:
        return {"setup_intent": intent.id, "skipped": f"setup intent is {intent.status}"}
    if id_of(intent.customer) != merchant.stripe_customer_id:
        raise StripeFailure(
            f"setup intent {intent.id} saved a card for customer {id_of(intent.customer)}, not"
            f" the merchant's {merchant.stripe_customer_id}: nothing to do here, `billing outbox"
            f" skip {claim.id} --reason ...`",
            is_transient=False,
            status=None,
            code=None,
        )
    method_id = id_of(intent.payment_method)
    await gateway.call(
        v1.customers.update,
        merchant.stripe_customer_id,
        key=f"{claim.key}:default",
        invoice_settings={"default_payment_method": method_id},
    )
    return {"customer": merchant.stripe_customer_id, "default_payment_method": method_id}


_COMMANDS: dict[Command, Push] = {
    Command.CUSTOMER_CREATE: _customer_create,
    Command.CUSTOMER_UPDATE: _customer_update,
    Command.CATALOG_PLAN: _catalog_plan,
    Command.INVOICE_PUSH: _invoice_push,
    Command.INVOICE_RETRY_PAYMENT: _invoice_retry_payment,
    Command.INVOICE_VOID: _invoice_void,
    Command.CREDIT_NOTE_PUSH: _credit_note_push,
    Command.PAYMENT_LOOKUP: _payment_lookup,
    Command.PAYMENT_METHOD_SET_DEFAULT: _payment_method_set_default,
}
