"""Stripe sync: the outbox of pushes, the inbox of webhooks, payments, refunds, disputes, the
catalog's Stripe mapping, and the Stripe ids and flags kept on merchants, invoices and credit
notes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe_outbox, stripe_inbox, payments, refunds, disputes, stripe_catalog_map"

SQL = """
-- What we push to Stripe, written in the transaction of the change that causes it. Rows of
-- one stream (a merchant, or 'catalog') go out in id order: a row waits for the one before it.
CREATE TABLE stripe_outbox (
    id bigserial PRIMARY KEY,
    merchant_id uuid NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    stream varchar(40) NOT NULL,
    command varchar(40) NOT NULL,
    payload jsonb NOT NULL,
    idempotency_key varchar(80) NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text NULL,
    stripe_ids jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz NULL,
    CONSTRAINT stripe_outbox_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT stripe_outbox_status_known CHECK (status IN ('pending', 'sent', 'parked'))
);
CREATE INDEX stripe_outbox_unsent_idx ON stripe_outbox (stream, id) WHERE status <> 'sent';

-- Webhooks as Stripe sent them: one row per event id (Stripe delivers at least once).
CREATE TABLE stripe_inbox (
    id bigserial PRIMARY KEY,
    event_id varchar(80) NOT NULL,
    event_type varchar(80) NOT NULL,
    event_created bigint NOT NULL,
    payload jsonb NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text NULL,
    outcome varchar(200) NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz NULL,
    CONSTRAINT stripe_inbox_event_id UNIQUE (event_id),
    CONSTRAINT stripe_inbox_status_known CHECK (status IN ('pending', 'processed', 'parked'))
);
CREATE INDEX stripe_inbox_pending_idx ON stripe_inbox (event_created, id)
    WHERE status = 'pending';

-- Money received against an invoice through Stripe: one payment per invoice.
CREATE TABLE payments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    stripe_invoice_id varchar(80) NOT NULL,
    stripe_payment_intent_id varchar(80) NULL,
    stripe_charge_id varchar(80) NULL,
    paid_at timestamptz NOT NULL,
    stripe_event_id varchar(80) NOT NULL,
    CONSTRAINT payments_one_per_invoice UNIQUE (merchant_id, invoice_id),
    CONSTRAINT payments_not_negative CHECK (amount_minor >= 0),
    FOREIGN KEY (merchant_id, invoice_id) REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX payments_intent_idx ON payments (stripe_payment_intent_id);
CREATE INDEX payments_charge_idx ON payments (stripe_charge_id);

-- Money given back: one row per Stripe refund, ours (from a credit note) or the dashboard's.
CREATE TABLE refunds (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    credit_note_id uuid NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    status varchar(16) NOT NULL,
    stripe_refund_id varchar(80) NOT NULL,
    origin varchar(16) NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT refunds_stripe_id UNIQUE (stripe_refund_id),
    CONSTRAINT refunds_positive CHECK (amount_minor > 0),
    CONSTRAINT refunds_origin_known CHECK (origin IN ('credit_note', 'stripe_dashboard')),
    FOREIGN KEY (merchant_id, invoice_id) REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX refunds_invoice_idx ON refunds (merchant_id, invoice_id);

CREATE TABLE disputes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    stripe_dispute_id varchar(80) NOT NULL,
    stripe_charge_id varchar(80) NOT NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    reason varchar(60) NOT NULL,
    status varchar(32) NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz NULL,
    CONSTRAINT disputes_stripe_id UNIQUE (stripe_dispute_id),
    FOREIGN KEY (merchant_id, invoice_id) REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT
);

-- Which Stripe product and price stand for each plan version's fee and each add-on; what the
-- Stripe dashboard did to them is recorded in ``drift``, never applied to our prices.
CREATE TABLE stripe_catalog_map (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    item_kind varchar(8) NOT NULL,
    code varchar(40) NOT NULL,
    version integer NOT NULL,
    stripe_product_id varchar(80) NOT NULL,
    stripe_price_id varchar(80) NULL,
    unit_amount_minor bigint NULL,
    currency varchar(3) NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    drift text NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stripe_catalog_map_item UNIQUE (item_kind, code, version),
    CONSTRAINT stripe_catalog_map_kind_known CHECK (item_kind IN ('plan', 'addon'))
);

ALTER TABLE merchants
    ADD COLUMN stripe_customer_id varchar(80) NULL,
    ADD COLUMN stripe_customer_deleted_at timestamptz NULL,
    ADD COLUMN dispute_flagged_at timestamptz NULL;

ALTER TABLE invoices
    ADD COLUMN stripe_invoice_id varchar(80) NULL,
    ADD COLUMN stripe_number varchar(80) NULL,
    ADD COLUMN hosted_invoice_url varchar(500) NULL,
    ADD COLUMN stripe_event_created bigint NOT NULL DEFAULT 0,
    ADD COLUMN payment_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN next_payment_retry_at timestamptz NULL,
    ADD COLUMN dispute_status varchar(32) NULL;
CREATE UNIQUE INDEX invoices_stripe_invoice_idx ON invoices (stripe_invoice_id)
    WHERE stripe_invoice_id IS NOT NULL;

ALTER TABLE credit_notes
    ADD COLUMN stripe_credit_note_id varchar(80) NULL,
    ADD COLUMN stripe_refund_id varchar(80) NULL;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
