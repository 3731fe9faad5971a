"""The catalog and subscriptions: plan versions, test clocks, subscriptions, their periods and
history, contracts, pending lines, usage aggregates."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "catalog, test clocks, subscriptions, contracts, pending lines, usage aggregates"

SQL = """
-- The catalog: every published plan version, immutable once published (a reference table).
CREATE TABLE plan_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code varchar(40) NOT NULL,
    version integer NOT NULL,
    tier varchar(20) NOT NULL,
    fingerprint varchar(64) NOT NULL,
    definition jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT plan_versions_code_version UNIQUE (code, version)
);

CREATE TABLE test_clocks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(100) NOT NULL DEFAULT '',
    frozen_time timestamptz NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'ready',
    created_at timestamptz NOT NULL DEFAULT current_timestamp
);
ALTER TABLE merchants ADD CONSTRAINT merchants_test_clock_fk
    FOREIGN KEY (test_clock_id) REFERENCES test_clocks (id) ON DELETE RESTRICT;

CREATE TABLE subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    plan_code varchar(40) NOT NULL,
    plan_version integer NOT NULL,
    addons varchar(40)[] NOT NULL DEFAULT '{}',
    status varchar(16) NOT NULL,
    currency varchar(3) NOT NULL,
    timezone varchar(64) NOT NULL,
    billing_period varchar(20) NOT NULL,
    billing_anchor timestamptz NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end timestamptz NOT NULL,
    trial_end timestamptz NULL,
    started_at timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at timestamptz NULL,
    paused_at timestamptz NULL,
    scheduled_change jsonb NULL,
    lock_version integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    updated_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT subscriptions_merchant_id_id UNIQUE (merchant_id, id),
    CONSTRAINT subscriptions_status_known CHECK (
        status IN ('trialing', 'active', 'past_due', 'suspended', 'paused', 'canceled')),
    CONSTRAINT subscriptions_period_order CHECK (current_period_start < current_period_end),
    CONSTRAINT subscriptions_billing_period_known CHECK (
        billing_period IN ('calendar_month', 'anniversary'))
);
-- One live subscription per merchant; canceled ones stay as history.
CREATE UNIQUE INDEX subscriptions_one_live_per_merchant
    ON subscriptions (merchant_id) WHERE status <> 'canceled';
-- The period-close pass looks for subscriptions whose period has ended.
CREATE INDEX subscriptions_period_end_idx
    ON subscriptions (current_period_end) WHERE status <> 'canceled';

-- Every billing period a subscription has lived through. plan_* are the terms in force at its
-- end (they rate its usage); fee_* the terms it started with (its fee is billed in advance).
-- Period close (invoicing) picks ended periods; one row per subscription period.
CREATE TABLE subscription_periods (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    plan_code varchar(40) NOT NULL,
    plan_version integer NOT NULL,
    addons varchar(40)[] NOT NULL DEFAULT '{}',
    fee_plan_code varchar(40) NOT NULL,
    fee_plan_version integer NOT NULL,
    fee_addons varchar(40)[] NOT NULL DEFAULT '{}',
    is_trial boolean NOT NULL DEFAULT false,
    status varchar(16) NOT NULL DEFAULT 'open',
    ended_at timestamptz NULL,
    is_final boolean NOT NULL DEFAULT false,
    CONSTRAINT subscription_periods_one_per_start
        UNIQUE (merchant_id, subscription_id, period_start),
    CONSTRAINT subscription_periods_status_known CHECK (status IN ('open', 'ended')),
    CONSTRAINT subscription_periods_order CHECK (period_start < period_end),
    FOREIGN KEY (merchant_id, subscription_id)
        REFERENCES subscriptions (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX subscription_periods_ended_idx
    ON subscription_periods (period_end) WHERE status = 'ended';

CREATE TABLE subscription_events (
    id bigserial PRIMARY KEY,
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    kind varchar(40) NOT NULL,
    from_status varchar(16) NULL,
    to_status varchar(16) NULL,
    reason varchar(200) NOT NULL DEFAULT '',
    actor_key_id uuid NULL,
    actor_role varchar(16) NOT NULL,
    at timestamptz NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (merchant_id, subscription_id)
        REFERENCES subscriptions (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX subscription_events_subscription_idx
    ON subscription_events (merchant_id, subscription_id, id);

CREATE TABLE contracts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    effective_from timestamptz NOT NULL,
    overrides jsonb NOT NULL,
    note varchar(500) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT contracts_merchant_effective UNIQUE (merchant_id, effective_from)
);

CREATE TABLE pending_invoice_lines (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    line jsonb NOT NULL,
    amount_minor bigint NOT NULL,
    is_invoiced_immediately boolean NOT NULL DEFAULT false,
    currency varchar(3) NOT NULL,
    invoice_id uuid NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    FOREIGN KEY (merchant_id, subscription_id)
        REFERENCES subscriptions (merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX pending_invoice_lines_waiting_idx
    ON pending_invoice_lines (merchant_id, subscription_id) WHERE invoice_id IS NULL;

-- Per-period usage totals, kept up to date at ingest so reads never scan raw events.
-- Concurrent writers of one merchant spread over ``slot`` rows instead of queueing on one row
-- lock; readers sum the slots.
CREATE TABLE usage_aggregates (
    merchant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    metric varchar(40) NOT NULL,
    slot smallint NOT NULL DEFAULT 0,
    event_count bigint NOT NULL DEFAULT 0,
    quantity numeric NOT NULL DEFAULT 0,
    gmv_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, subscription_id, period_start, metric, slot)
);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
