"""Foundation: merchants, API keys (hash only), the audit log, idempotency records."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "merchants, api_keys, audit_log, idempotency_records"

SQL = """
CREATE TABLE merchants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(200) NOT NULL,
    contact_email varchar(320) NOT NULL,
    timezone varchar(64) NOT NULL DEFAULT 'Asia/Shanghai',
    currency varchar(3) NOT NULL DEFAULT 'CNY',
    status varchar(20) NOT NULL DEFAULT 'active',
    test_clock_id uuid NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    updated_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT merchants_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT merchants_status_known CHECK (status IN ('active', 'suspended', 'closed'))
);

-- Keys are looked up by hash on every request; operator keys have no merchant.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    role varchar(16) NOT NULL,
    name varchar(100) NOT NULL DEFAULT '',
    prefix varchar(24) NOT NULL,
    key_hash varchar(64) NOT NULL UNIQUE,
    scopes varchar(32)[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    revoked_at timestamptz NULL,
    CONSTRAINT api_keys_role_known CHECK (role IN ('merchant', 'operator')),
    CONSTRAINT api_keys_merchant_role CHECK ((role = 'merchant') = (merchant_id IS NOT NULL))
);
CREATE INDEX api_keys_merchant_idx ON api_keys (merchant_id);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    merchant_id uuid NULL,
    actor_key_id uuid NULL,
    actor_role varchar(16) NOT NULL,
    entity varchar(40) NOT NULL,
    entity_id varchar(64) NOT NULL,
    action varchar(40) NOT NULL,
    changes jsonb NOT NULL DEFAULT '{}',
    request_id varchar(64) NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT current_timestamp
);
CREATE INDEX audit_log_merchant_at_idx ON audit_log (merchant_id, at);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TABLE idempotency_records (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope varchar(80) NOT NULL,
    idempotency_key varchar(200) NOT NULL,
    request_hash varchar(64) NOT NULL,
    status_code bigint NOT NULL,
    response_body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT idempotency_records_scope_key UNIQUE (scope, idempotency_key)
);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
