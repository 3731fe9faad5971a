"""Retention: the audit log partitioned by month (old months can be detached, archived and
dropped), indexes that let the worker find expired rows in small batches, and the running totals
of rows removed (what ``billing_retention_rows_removed_total`` reports)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T23:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_log by month, retention indexes, retention_totals"

# audit_log becomes a table partitioned by month of ``at``. A partitioned table's primary key
# includes its partition key, and on Citus a tenant table's includes ``merchant_id``: (merchant_id,
# id, at). Entries that had no merchant (operator actions) move under the platform tenant (the
# id of ``service.tenancy.platform.PLATFORM_MERCHANT_ID``), so the shard key is never NULL. Months
# from the oldest entry (or this month) to 24 months ahead; ``service.db.partitions`` keeps adding
# months ahead, and anything outside them lands in the default partition. The id sequence is kept:
# ids keep increasing across the move (the API pages by id).
SQL = """
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER INDEX audit_log_pkey RENAME TO audit_log_unpartitioned_pkey;
DROP INDEX audit_log_merchant_at_idx;
DROP INDEX audit_log_at_idx;
ALTER SEQUENCE audit_log_id_seq OWNED BY NONE;

CREATE TABLE audit_log (
    id bigint NOT NULL DEFAULT nextval('audit_log_id_seq'),
    merchant_id uuid NOT NULL,
    actor_key_id uuid NULL,
    actor_role varchar(16) NOT NULL,
    entity varchar(40) NOT NULL,
    entity_id varchar(64) NOT NULL,
    action varchar(40) NOT NULL,
    changes jsonb NOT NULL DEFAULT '{}',
    request_id varchar(64) NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT audit_log_pkey PRIMARY KEY (merchant_id, id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
-- Newest first, for everyone (operators page by id) and per time range.
CREATE INDEX audit_log_id_idx ON audit_log (id);
CREATE INDEX audit_log_at_idx ON audit_log (at);

DO $$
DECLARE
    month_start timestamptz := date_trunc(
        'month', least(coalesce((SELECT min(at) FROM audit_log_unpartitioned), now()), now()),
        'UTC');
    last_start timestamptz :=
        (date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '24 months')
        AT TIME ZONE 'UTC';
BEGIN
    WHILE month_start <= last_start LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
            'audit_log_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM'),
            to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00"'),
            to_char((month_start + interval '1 month') AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS"+00"'));
        month_start := (month_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
    END LOOP;
END
$$;
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

INSERT INTO audit_log (id, merchant_id, actor_key_id, actor_role, entity, entity_id, action,
                       changes, request_id, at)
SELECT id, coalesce(merchant_id, '00000000-0000-0000-0000-000000000001'), actor_key_id,
       actor_role, entity, entity_id, action, changes, request_id, at
FROM audit_log_unpartitioned;
DROP TABLE audit_log_unpartitioned;

-- The worker deletes expired rows oldest first, a small batch at a time: each of these finds
-- the next batch without reading the rows that stay.
CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);
CREATE INDEX stripe_inbox_processed_idx ON stripe_inbox (processed_at)
    WHERE status = 'processed';
CREATE INDEX stripe_outbox_sent_idx ON stripe_outbox (sent_at) WHERE status = 'sent';
-- /metrics counts the events still to process (pending, parked) without reading the rest.
CREATE INDEX stripe_inbox_unprocessed_idx ON stripe_inbox (received_at)
    WHERE status <> 'processed';

-- Rows removed by retention so far, per table: written in the transaction of each batch, read
-- by the API's /metrics (the worker that removes them is not what Prometheus scrapes).
CREATE TABLE retention_totals (
    table_name varchar(63) PRIMARY KEY,
    rows_removed bigint NOT NULL DEFAULT 0,
    last_removed_at timestamptz NULL
);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
