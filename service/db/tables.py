"""Piccolo tables: what the service stores. The DDL itself lives in ``migrations/``.

Every tenant-owned table carries ``merchant_id``; its primary key and every business unique
constraint start with it (the distribution key on Citus: ``service.db.distribution``). Money is
BIGINT minor units plus a currency; rates are NUMERIC; timestamps are timestamptz in UTC.
Foreign keys on money tables never cascade.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    BigInt,
    BigSerial,
    Boolean,
    Bytea,
    Column,
    Integer,
    Numeric,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.query import Delete, Insert, Update
from piccolo.table import Table


class TenantRows:
    """Mixed into every table of merchants' rows (before ``Table``). Piccolo's ``save()`` and
    ``remove()`` of a stored row filter by the primary key Piccolo knows (``id``) alone; here
    they also name ``merchant_id``, so the statement goes to the merchant's shard on Citus.
    Tables whose Piccolo key stands in for a composite key without ``id`` refuse them: write
    their SQL by hand."""

    def save(self, columns: Sequence[Column | str] | None = None) -> Insert | Update:
        query = super().save(columns)  # type: ignore[misc]
        if isinstance(query, Update):
            return query.where(self._own_row_condition())
        return query

    def remove(self) -> Delete:
        query = super().remove()  # type: ignore[misc]
        return query.where(self._own_row_condition())

    def _own_row_condition(self) -> Any:
        table: Any = type(self)
        if table._meta.primary_key._meta.name != "id":
            raise TypeError(
                f"{table.__name__}: Piccolo's key is not the row's key; write the statement"
                " by hand, naming merchant_id and the rest of the key"
            )
        return table._meta.get_column_by_name("merchant_id") == self.merchant_id


class Merchant(Table, tablename="merchants"):
    id = UUID(primary_key=True)
    name = Varchar(length=200)
    contact_email = Varchar(length=320)
    timezone = Varchar(length=64, default="Asia/Shanghai")
    currency = Varchar(length=3, default="CNY")
    status = Varchar(length=20, default="active")
    test_clock_id = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    stripe_customer_id = Varchar(length=80, null=True, default=None)
    stripe_customer_deleted_at = Timestamptz(null=True, default=None)
    dispute_flagged_at = Timestamptz(null=True, default=None)
    default_payment_method_id = Varchar(length=255, null=True, default=None)
    """The Stripe customer's invoice default, as the newest ``customer.updated`` said: what the
    merchant's invoices are charged to (None: invoices are sent)."""
    stripe_customer_event_created = BigInt(default=0)
    """``created`` of the newest customer event applied (older ones are stale)."""
    invoice_collection = Varchar(length=16, default="automatic")
    """Payment terms: ``automatic`` (charged once a way to pay is saved, sent until then) or
    ``send_invoice`` (always sent: a negotiated contract paying by bank transfer)."""
    days_until_due = Integer(null=True, default=None)
    """Days a sent invoice is due after it is issued (None: the plan's)."""


class ApiKey(Table, tablename="api_keys"):
    """An API key: only its SHA-256 hash and a short visible prefix are kept.

    A reference table on Citus (looked up by hash before the merchant is known), so without a
    foreign key to ``merchants``: ``service.tenancy.keys`` checks the merchant when it issues one.
    """

    id = UUID(primary_key=True)
    merchant_id = UUID(null=True, default=None)
    role = Varchar(length=16)
    name = Varchar(length=100, default="")
    prefix = Varchar(length=24)
    key_hash = Varchar(length=64, unique=True)
    scopes = Array(base_column=Varchar(length=32))
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)


class AuditEntry(TenantRows, Table, tablename="audit_log"):
    """Who changed what, when: one row per state change made through the API.

    Partitioned by month of ``at`` (``service.db.partitions``); the real key is (merchant_id,
    id, at). Operator actions are stored under the platform tenant."""

    id = BigSerial(primary_key=True)
    merchant_id = UUID()
    actor_key_id = UUID(null=True, default=None)
    actor_role = Varchar(length=16)
    entity = Varchar(length=40)
    entity_id = Varchar(length=64)
    action = Varchar(length=40)
    changes = JSONB(default="{}")
    request_id = Varchar(length=64, default="")
    at = Timestamptz(default=TimestamptzNow())


class IdempotencyRecord(Table, tablename="idempotency_records"):
    """The stored answer to a request made with an ``Idempotency-Key`` header."""

    id = UUID(primary_key=True)
    scope = Varchar(length=80)
    """Who may replay it: the key's merchant, or the operator key id."""
    idempotency_key = Varchar(length=200)
    request_hash = Varchar(length=64)
    status_code = BigInt()
    response_body = JSONB()
    created_at = Timestamptz(default=TimestamptzNow())


class PlanVersionRow(Table, tablename="plan_versions"):
    """A published plan version: its full definition as JSON, never edited after publishing."""

    id = UUID(primary_key=True)
    code = Varchar(length=40)
    version = Integer()
    tier = Varchar(length=20)
    fingerprint = Varchar(length=64)
    definition = JSONB()
    published_at = Timestamptz(default=TimestamptzNow())


class TestClock(Table, tablename="test_clocks"):
    """A movable clock (like Stripe's): merchants attached to it live at its ``frozen_time``."""

    id = UUID(primary_key=True)
    name = Varchar(length=100, default="")
    frozen_time = Timestamptz()
    status = Varchar(length=16, default="ready")
    created_at = Timestamptz(default=TimestamptzNow())


class Subscription(TenantRows, Table, tablename="subscriptions"):
    """A merchant's subscription to one plan version; one live subscription per merchant."""

    id = UUID(primary_key=True)
    merchant_id = UUID()
    plan_code = Varchar(length=40)
    plan_version = Integer()
    addons = Array(base_column=Varchar(length=40))
    status = Varchar(length=16)
    currency = Varchar(length=3)
    timezone = Varchar(length=64)
    billing_period = Varchar(length=20)
    billing_anchor = Timestamptz()
    current_period_start = Timestamptz()
    current_period_end = Timestamptz()
    trial_end = Timestamptz(null=True, default=None)
    started_at = Timestamptz()
    cancel_at_period_end = Boolean(default=False)
    canceled_at = Timestamptz(null=True, default=None)
    paused_at = Timestamptz(null=True, default=None)
    scheduled_change = JSONB(null=True, default=None)
    lock_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class SubscriptionPeriod(TenantRows, Table, tablename="subscription_periods"):
    """One billing period of a subscription and the terms in force at its end."""

    id = UUID(primary_key=True)
    merchant_id = UUID()
    subscription_id = UUID()
    period_start = Timestamptz()
    period_end = Timestamptz()
    plan_code = Varchar(length=40)
    plan_version = Integer()
    addons = Array(base_column=Varchar(length=40))
    fee_plan_code = Varchar(length=40)
    fee_plan_version = Integer()
    fee_addons = Array(base_column=Varchar(length=40))
    is_trial = Boolean(default=False)
    status = Varchar(length=16, default="open")
    ended_at = Timestamptz(null=True, default=None)
    is_final = Boolean(default=False)


class SubscriptionEvent(TenantRows, Table, tablename="subscription_events"):
    """The history of a subscription: every transition and change, with who and when."""

    id = BigSerial(primary_key=True)
    merchant_id = UUID()
    subscription_id = UUID()
    kind = Varchar(length=40)
    from_status = Varchar(length=16, null=True, default=None)
    to_status = Varchar(length=16, null=True, default=None)
    reason = Varchar(length=200, default="")
    actor_key_id = UUID(null=True, default=None)
    actor_role = Varchar(length=16)
    at = Timestamptz()
    details = JSONB(default="{}")


class Contract(TenantRows, Table, tablename="contracts"):
    """A custom-tier merchant's negotiated prices, effective from a date (latest wins)."""

    id = UUID(primary_key=True)
    merchant_id = UUID()
    effective_from = Timestamptz()
    overrides = JSONB()
    note = Varchar(length=500, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class PendingLine(TenantRows, Table, tablename="pending_invoice_lines"):
    """A rated line waiting for an invoice (proration from a plan change, ...)."""

    id = UUID(primary_key=True)
    merchant_id = UUID()
    subscription_id = UUID()
    line = JSONB()
    """The ``plans.lines.InvoiceLine`` as JSON: kind, amounts, period, explanation."""
    amount_minor = BigInt()
    is_invoiced_immediately = Boolean(default=False)
    currency = Varchar(length=3)
    invoice_id = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class UsageAggregateRow(TenantRows, Table, tablename="usage_aggregates"):
    """Usage totals per subscription period and metric, spread over a few ``slot`` rows."""

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is composite
    subscription_id = UUID()
    period_start = Timestamptz()
    metric = Varchar(length=40)
    slot = SmallInt(default=0)
    event_count = BigInt(default=0)
    quantity = Numeric(default=Decimal(0))
    gmv_minor = BigInt(default=0)


class Invoice(TenantRows, Table, tablename="invoices"):
    """One invoice: a subscription period's (``kind='period'``) or lines billed at once."""

    id = UUID(primary_key=True)
    merchant_id = UUID()
    subscription_id = UUID()
    kind = Varchar(length=16)
    period_start = Timestamptz()
    period_end = Timestamptz()
    status = Varchar(length=16)
    number = Varchar(length=32, null=True, default=None)
    currency = Varchar(length=3)
    plan_code = Varchar(length=40)
    plan_version = Integer()
    subtotal_minor = BigInt()
    discounts_minor = BigInt()
    credits_minor = BigInt()
    tax_rate = Numeric()
    tax_minor = BigInt()
    total_minor = BigInt()
    amount_due_minor = BigInt()
    amount_paid_minor = BigInt(default=0)
    amount_credited_minor = BigInt(default=0)
    credit_balance_applied_minor = BigInt(default=0)
    credit_balance_carried_minor = BigInt(default=0)
    created_at = Timestamptz()
    finalized_at = Timestamptz(null=True, default=None)
    paid_at = Timestamptz(null=True, default=None)
    voided_at = Timestamptz(null=True, default=None)
    marked_uncollectible_at = Timestamptz(null=True, default=None)
    stripe_invoice_id = Varchar(length=80, null=True, default=None)
    stripe_number = Varchar(length=80, null=True, default=None)
    hosted_invoice_url = Varchar(length=500, null=True, default=None)
    stripe_event_created = BigInt(default=0)
    """``created`` of the newest Stripe event applied to this invoice (older ones are stale)."""
    payment_attempts = Integer(default=0)
    next_payment_retry_at = Timestamptz(null=True, default=None)
    dispute_status = Varchar(length=32, null=True, default=None)
    collection_method = Varchar(length=24, null=True, default=None)
    """How Stripe collects it: ``charge_automatically`` or ``send_invoice`` (None: not pushed)."""
    due_at = Timestamptz(null=True, default=None)
    """A sent invoice's due date, on our clock (the merchant's)."""
    awaits_payment_method = Boolean(default=False)
    """Sent because no way to pay was on file: paid with the first one the merchant saves."""
    overdue_stage = SmallInt(default=0)
    """Dunning of an unpaid sent invoice: 1 past its due date, 2 the subscription suspended."""


class InvoiceLineRow(TenantRows, Table, tablename="invoice_lines"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    invoice_id = UUID()
    position = Integer()
    kind = Varchar(length=20)
    charge_code = Varchar(length=60)
    description = Varchar(length=200)
    quantity = Numeric()
    unit_price = Numeric(null=True, default=None)
    rate = Numeric(null=True, default=None)
    amount_minor = BigInt()
    currency = Varchar(length=3)
    period_start = Timestamptz()
    period_end = Timestamptz()
    explanation = Varchar(length=400)


class InvoiceNumberPrefix(Table, tablename="invoice_number_prefixes"):
    """A merchant's invoice number prefix, unique across the ledger (a reference table)."""

    merchant_id = UUID(primary_key=True)
    prefix = Varchar(length=8, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())


class InvoiceNumberSequence(TenantRows, Table, tablename="invoice_number_sequences"):
    """The last number a merchant's invoices took: gapless, bumped when one is finalized."""

    merchant_id = UUID(primary_key=True)
    last_number = BigInt(default=0)


class CreditNote(TenantRows, Table, tablename="credit_notes"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    invoice_id = UUID()
    number = Varchar(length=40)
    amount_minor = BigInt()
    currency = Varchar(length=3)
    reason = Varchar(length=30)
    memo = Varchar(length=500, default="")
    kind = Varchar(length=16)
    refund_status = Varchar(length=16)
    created_at = Timestamptz()
    stripe_credit_note_id = Varchar(length=80, null=True, default=None)
    stripe_refund_id = Varchar(length=80, null=True, default=None)


class SlaReportRow(TenantRows, Table, tablename="sla_reports"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    subscription_id = UUID()
    period_start = Timestamptz()
    period_end = Timestamptz()
    report = JSONB()
    received_at = Timestamptz()
    invoice_id = UUID(null=True, default=None)
    credit_note_id = UUID(null=True, default=None)


class CreditBalance(TenantRows, Table, tablename="credit_balances"):
    merchant_id = UUID(primary_key=True)
    currency = Varchar(length=3)
    balance_minor = BigInt(default=0)


class CreditBalanceMovement(TenantRows, Table, tablename="credit_balance_movements"):
    """One amount into (carried forward) or out of (applied, credited, refunded) a merchant's
    credit balance; ``service.invoicing.credit_balance`` writes them."""

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is (merchant_id, id)
    id = UUID()
    seq = BigInt()
    kind = Varchar(length=20)
    amount_minor = BigInt()
    currency = Varchar(length=3)
    balance_after_minor = BigInt()
    invoice_id = UUID(null=True, default=None)
    credit_note_id = UUID(null=True, default=None)
    memo = Varchar(length=300, default="")
    created_at = Timestamptz()


class UsageBilled(TenantRows, Table, tablename="usage_billed"):
    merchant_id = UUID(primary_key=True)  # the real key adds subscription, period, metric
    subscription_id = UUID()
    period_start = Timestamptz()
    period_end = Timestamptz()
    metric = Varchar(length=40)
    event_count = BigInt()
    quantity = Numeric()
    gmv_minor = BigInt()


class UsageTransaction(TenantRows, Table, tablename="usage_transactions"):
    """One row per (merchant, transaction id): what makes usage counting exactly-once.

    The raw events live in ``usage_events``, partitioned by month (a partitioned table Piccolo
    cannot create, so it has no ``Table`` here; ``service.usage`` reaches it with SQL).
    """

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is composite
    transaction_id = Varchar(length=200)
    content_hash = Bytea()
    occurred_at = Timestamptz()
    voided_at = Timestamptz(null=True, default=None)


class StripeOutbox(TenantRows, Table, tablename="stripe_outbox"):
    """A push to Stripe, written with the change that causes it; sent in order per stream.
    ``status``: pending, in_flight (claimed, Stripe being called), sent, parked (waits for a
    person), skipped or resolved (by a person, with the ``resolution``)."""

    id = BigSerial(primary_key=True)
    merchant_id = UUID()
    """The merchant the push is about; catalog pushes the platform tenant's."""
    stream = Varchar(length=40)
    subject = Varchar(length=80, default="")
    """What in Stripe the row changes ('invoice <id>', ...; '' the whole stream): a parked row
    holds back the later rows of its subject only (see ``webhooks.outbox``)."""
    command = Varchar(length=40)
    payload = JSONB()
    idempotency_key = Varchar(length=80)
    status = Varchar(length=16, default="pending")
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    lease_until = Timestamptz(null=True, default=None)
    """While ``in_flight``: until when the claiming worker holds the row."""
    last_error = Text(null=True, default=None)
    stripe_ids = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
    resolution = Text(null=True, default=None)
    resolved_at = Timestamptz(null=True, default=None)


class StripeInbox(Table, tablename="stripe_inbox"):
    """A webhook event as Stripe sent it, stored once per event id, processed by the worker."""

    id = BigSerial(primary_key=True)
    event_id = Varchar(length=80, unique=True)
    event_type = Varchar(length=80)
    event_created = BigInt()
    payload = JSONB(null=True, default=None)
    """The event as JSON; NULL for an event kept only as ``raw`` (see below)."""
    raw = Bytea(null=True, default=None)
    """The signed bytes of an event that cannot be processed (parked, reason in last_error)."""
    status = Varchar(length=16, default="pending")
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    last_error = Text(null=True, default=None)
    outcome = Varchar(length=200, null=True, default=None)
    received_at = Timestamptz(default=TimestamptzNow())
    processed_at = Timestamptz(null=True, default=None)


class Payment(TenantRows, Table, tablename="payments"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    invoice_id = UUID()
    amount_minor = BigInt()
    currency = Varchar(length=3)
    stripe_invoice_id = Varchar(length=80)
    stripe_payment_intent_id = Varchar(length=80, null=True, default=None)
    stripe_charge_id = Varchar(length=80, null=True, default=None)
    paid_at = Timestamptz()
    stripe_event_id = Varchar(length=80)


class PaymentMethodRow(TenantRows, Table, tablename="payment_methods"):
    """A way to pay saved at Stripe for a merchant, as ``payment_method.attached`` and
    ``payment_method.detached`` described it (the card's brand and last digits, no more)."""

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is (merchant_id, id)
    id = Varchar(length=255)
    type = Varchar(length=40)
    card_brand = Varchar(length=32, null=True, default=None)
    card_last4 = Varchar(length=4, null=True, default=None)
    card_exp_month = SmallInt(null=True, default=None)
    card_exp_year = SmallInt(null=True, default=None)
    is_attached = Boolean(default=True)
    event_created = BigInt(default=0)
    updated_at = Timestamptz(default=TimestamptzNow())


class PaymentSetupLink(TenantRows, Table, tablename="payment_setup_links"):
    """A link where a merchant saves a way to pay (``/v1/pay/setup/<token>``): the token's
    SHA-256, the Checkout Session it opened last, and when it was used."""

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is (merchant_id, id)
    id = UUID()
    token_hash = Varchar(length=64)
    success_url = Varchar(length=2048)
    cancel_url = Varchar(length=2048)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    sessions_made = Integer(default=0)
    checkout_session_id = Varchar(length=255, null=True, default=None)
    checkout_url = Varchar(length=2048, null=True, default=None)
    checkout_expires_at = Timestamptz(null=True, default=None)
    completed_at = Timestamptz(null=True, default=None)


class Refund(TenantRows, Table, tablename="refunds"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    invoice_id = UUID()
    credit_note_id = UUID(null=True, default=None)
    amount_minor = BigInt()
    currency = Varchar(length=3)
    status = Varchar(length=16)
    stripe_refund_id = Varchar(length=80, unique=True)
    origin = Varchar(length=16)
    created_at = Timestamptz()


class Dispute(TenantRows, Table, tablename="disputes"):
    id = UUID(primary_key=True)
    merchant_id = UUID()
    invoice_id = UUID()
    stripe_dispute_id = Varchar(length=80, unique=True)
    stripe_charge_id = Varchar(length=80)
    amount_minor = BigInt()
    currency = Varchar(length=3)
    reason = Varchar(length=60)
    status = Varchar(length=32)
    opened_at = Timestamptz()
    closed_at = Timestamptz(null=True, default=None)


class StripeOwner(Table, tablename="stripe_owners"):
    """Which merchant a Stripe customer, payment intent or charge belongs to: how a webhook
    handler finds the merchant (and on Citus its shard) before it reads a tenant table. A
    reference table on Citus; ``service.tenancy.stripe_owners`` reads and writes it."""

    stripe_id = Varchar(length=80, primary_key=True)
    merchant_id = UUID()
    kind = Varchar(length=16)
    created_at = Timestamptz(default=TimestamptzNow())


class StripeCatalogMap(Table, tablename="stripe_catalog_map"):
    """The Stripe product and price of a plan version's fee or an add-on."""

    id = UUID(primary_key=True)
    item_kind = Varchar(length=8)
    code = Varchar(length=40)
    version = Integer()
    stripe_product_id = Varchar(length=80)
    stripe_price_id = Varchar(length=80, null=True, default=None)
    unit_amount_minor = BigInt(null=True, default=None)
    currency = Varchar(length=3)
    is_active = Boolean(default=True)
    drift = Text(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class WebhookEndpoint(TenantRows, Table, tablename="webhook_endpoints"):
    """Where the platform hears about billing events: registered by an operator (under the
    platform tenant; ``for_merchant_id`` None: every merchant) or by a merchant for its own.
    ``signing_secret`` signs deliveries; it is shown once, at creation, and never again."""

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is (merchant_id, id)
    id = UUID()
    for_merchant_id = UUID(null=True, default=None)
    url = Varchar(length=2048)
    description = Varchar(length=200, default="")
    event_types = Array(base_column=Varchar(length=40))
    signing_secret = Varchar(length=100)
    consecutive_failures = Integer(default=0)
    disabled_at = Timestamptz(null=True, default=None)
    disabled_reason = Varchar(length=300, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)


class OutgoingEvent(TenantRows, Table, tablename="outgoing_events"):
    """Something the platform is told about, with the JSON sent (``body``) byte for byte."""

    merchant_id = UUID(primary_key=True)  # the real key is (merchant_id, id)
    id = UUID()
    type = Varchar(length=40)
    created_at = Timestamptz()
    """When it happened, on the merchant's clock (a test clock's time, for one on a clock)."""
    recorded_at = Timestamptz(default=TimestamptzNow())
    api_version = Varchar(length=20)
    body = Text()


class OutgoingDelivery(TenantRows, Table, tablename="outgoing_deliveries"):
    """One event to one endpoint. ``status``: pending, in_flight (claimed, being sent),
    delivered, failed (given up after the retry window) or canceled (endpoint deleted)."""

    merchant_id = UUID(primary_key=True)  # the real key is (merchant_id, id)
    id = UUID()
    seq = BigSerial()
    event_id = UUID()
    endpoint_merchant_id = UUID()
    endpoint_id = UUID()
    status = Varchar(length=16, default="pending")
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    lease_until = Timestamptz(null=True, default=None)
    retrying_since = Timestamptz(default=TimestamptzNow())
    """Retried until the retry window after this (re-enabling its endpoint restarts it)."""
    is_replay = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    delivered_at = Timestamptz(null=True, default=None)
    last_status_code = Integer(null=True, default=None)
    last_error = Varchar(length=300, null=True, default=None)


class OutgoingAttempt(TenantRows, Table, tablename="outgoing_attempts"):
    """The delivery log: one row per attempt (answer code, latency, a short excerpt)."""

    merchant_id = UUID(primary_key=True)  # the real key is (merchant_id, delivery_id, attempt)
    delivery_id = UUID()
    attempt = Integer()
    attempted_at = Timestamptz()
    outcome = Varchar(length=16)
    status_code = Integer(null=True, default=None)
    latency_ms = Integer(null=True, default=None)
    error = Varchar(length=300, null=True, default=None)
    response_excerpt = Varchar(length=500, null=True, default=None)


class OutgoingEventMark(TenantRows, Table, tablename="outgoing_event_marks"):
    """An event that happens once per period has happened (its mark, e.g. a usage threshold)."""

    merchant_id = UUID(primary_key=True)  # the real key is (merchant_id, mark)
    mark = Varchar(length=200)
    created_at = Timestamptz(default=TimestamptzNow())


class FinanceSession(TenantRows, Table, tablename="finance_sessions"):
    """A finance page login: its cookie's token hash, the key it was opened with, its end.

    A tenant table under the platform tenant; the real primary key is (merchant_id, id), and
    every statement names merchant_id (``service.tenancy.sessions``), never Piccolo's save().
    """

    merchant_id = UUID(primary_key=True)  # Piccolo needs one; the real key is composite
    id = UUID()
    key_id = UUID()
    token_hash = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    ended_at = Timestamptz(null=True, default=None)


ALL_TABLES: tuple[type[Table], ...] = (
    Merchant,
    ApiKey,
    AuditEntry,
    IdempotencyRecord,
    PlanVersionRow,
    TestClock,
    Subscription,
    SubscriptionPeriod,
    SubscriptionEvent,
    Contract,
    PendingLine,
    UsageAggregateRow,
    Invoice,
    InvoiceLineRow,
    InvoiceNumberPrefix,
    InvoiceNumberSequence,
    CreditNote,
    SlaReportRow,
    CreditBalance,
    CreditBalanceMovement,
    UsageBilled,
    StripeOutbox,
    StripeInbox,
    Payment,
    PaymentMethodRow,
    PaymentSetupLink,
    Refund,
    Dispute,
    StripeCatalogMap,
    StripeOwner,
    WebhookEndpoint,
    OutgoingEvent,
    OutgoingDelivery,
    OutgoingAttempt,
    OutgoingEventMark,
    FinanceSession,
)
