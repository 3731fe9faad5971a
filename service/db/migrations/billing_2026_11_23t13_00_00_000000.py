"""Invoicing: invoices and their lines, gapless numbers, credit notes, SLA reports, credit
balances, and what has been billed of each period's usage (for late-usage adjustments)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "invoices, invoice_lines, numbering, credit_notes, sla_reports, balances"

SQL = """
CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    subscription_id uuid NOT NULL,
    kind varchar(16) NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    status varchar(16) NOT NULL,
    number varchar(32) NULL,
    currency varchar(3) NOT NULL,
    plan_code varchar(40) NOT NULL,
    plan_version integer NOT NULL,
    subtotal_minor bigint NOT NULL,
    discounts_minor bigint NOT NULL,
    credits_minor bigint NOT NULL,
    tax_rate numeric NOT NULL,
    tax_minor bigint NOT NULL,
    total_minor bigint NOT NULL,
    amount_due_minor bigint NOT NULL,
    amount_paid_minor bigint NOT NULL DEFAULT 0,
    amount_credited_minor bigint NOT NULL DEFAULT 0,
    credit_balance_applied_minor bigint NOT NULL DEFAULT 0,
    credit_balance_carried_minor bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    finalized_at timestamptz NULL,
    paid_at timestamptz NULL,
    voided_at timestamptz NULL,
    marked_uncollectible_at timestamptz NULL,
    CONSTRAINT invoices_merchant_id_id UNIQUE (merchant_id, id),
    -- Exactly one invoice per subscription period (and per immediate billing instant).
    CONSTRAINT invoices_one_per_period UNIQUE (merchant_id, subscription_id, period_start, kind),
    CONSTRAINT invoices_number_unique UNIQUE (merchant_id, number),
    CONSTRAINT invoices_kind_known CHECK (kind IN ('period', 'immediate')),
    CONSTRAINT invoices_status_known CHECK (
        status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    CONSTRAINT invoices_numbered_when_final CHECK ((status = 'draft') = (number IS NULL)),
    CONSTRAINT invoices_total_not_negative CHECK (total_minor >= 0),
    CONSTRAINT invoices_credited_within_total CHECK (
        amount_credited_minor >= 0 AND amount_credited_minor <= total_minor),
    FOREIGN KEY (merchant_id, subscription_id)
        REFERENCES subscriptions (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX invoices_merchant_status_idx ON invoices (merchant_id, status, period_start);
CREATE INDEX invoices_finalized_idx ON invoices (finalized_at);

CREATE TABLE invoice_lines (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    position integer NOT NULL,
    kind varchar(20) NOT NULL,
    charge_code varchar(60) NOT NULL,
    description varchar(200) NOT NULL,
    quantity numeric NOT NULL,
    unit_price numeric NULL,
    rate numeric NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    explanation varchar(400) NOT NULL,
    CONSTRAINT invoice_lines_position UNIQUE (merchant_id, invoice_id, position),
    FOREIGN KEY (merchant_id, invoice_id) REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT
);

-- Finalized invoices never change: their money, lines and number are frozen by trigger.
CREATE FUNCTION invoices_refuse_edits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'draft' AND (
        NEW.total_minor <> OLD.total_minor OR NEW.subtotal_minor <> OLD.subtotal_minor
        OR NEW.tax_minor <> OLD.tax_minor OR NEW.number IS DISTINCT FROM OLD.number
        OR NEW.period_start <> OLD.period_start OR NEW.currency <> OLD.currency
    ) THEN
        RAISE EXCEPTION 'invoice % is finalized: its amounts and number never change', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_frozen BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_refuse_edits();

CREATE FUNCTION invoice_lines_refuse_edits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoices WHERE id = OLD.invoice_id AND status <> 'draft') THEN
        RAISE EXCEPTION 'lines of finalized invoice % never change', OLD.invoice_id;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER invoice_lines_frozen BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_refuse_edits();

-- Gapless numbers: the counter row is incremented inside the finalizing transaction, so a
-- rollback gives the number back and concurrent finalizes of one merchant queue on the row.
CREATE TABLE invoice_number_counters (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    year integer NOT NULL,
    last_number integer NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, year)
);

CREATE TABLE credit_notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    number varchar(40) NOT NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    reason varchar(30) NOT NULL,
    memo varchar(500) NOT NULL DEFAULT '',
    kind varchar(16) NOT NULL,
    refund_status varchar(16) NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT credit_notes_number UNIQUE (merchant_id, number),
    CONSTRAINT credit_notes_positive CHECK (amount_minor > 0),
    CONSTRAINT credit_notes_reason_known CHECK (
        reason IN ('sla_credit', 'goodwill', 'billing_error', 'duplicate', 'stripe_refund')),
    CONSTRAINT credit_notes_kind_known CHECK (kind IN ('pre_payment', 'post_payment')),
    CONSTRAINT credit_notes_refund_known CHECK (
        refund_status IN ('none', 'pending', 'refunded', 'failed')),
    FOREIGN KEY (merchant_id, invoice_id) REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX credit_notes_invoice_idx ON credit_notes (merchant_id, invoice_id);

CREATE TABLE sla_reports (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    report jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    invoice_id uuid NULL,
    credit_note_id uuid NULL,
    CONSTRAINT sla_reports_one_per_period UNIQUE (merchant_id, subscription_id, period_start),
    FOREIGN KEY (merchant_id, subscription_id)
        REFERENCES subscriptions (merchant_id, id) ON DELETE RESTRICT
);

-- Credits beyond an invoice's total carry forward here and reduce the next invoices.
CREATE TABLE credit_balances (
    merchant_id uuid PRIMARY KEY REFERENCES merchants (id) ON DELETE RESTRICT,
    currency varchar(3) NOT NULL,
    balance_minor bigint NOT NULL DEFAULT 0,
    CONSTRAINT credit_balances_not_negative CHECK (balance_minor >= 0)
);

-- How much of each period's usage has been billed (its invoice, then any adjustments): late
-- events and voids after an invoice show as the difference from the aggregates.
CREATE TABLE usage_billed (
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    metric varchar(40) NOT NULL,
    event_count bigint NOT NULL,
    quantity numeric NOT NULL,
    gmv_minor bigint NOT NULL,
    PRIMARY KEY (merchant_id, subscription_id, period_start, metric)
);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
