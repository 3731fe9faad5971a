"""Metered usage: the exactly-once ledger of transaction ids and the raw events, partitioned by
month of ``occurred_at``.

``usage_events`` is a partitioned table, which Piccolo's DDL cannot create, so it has no Piccolo
``Table`` in ``service.db.tables.ALL_TABLES`` (the schema test compares those against the
migrations); ``service.usage`` reaches it with parameterized SQL. ``usage_transactions`` is a
plain table and has its ``Table``.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "usage_transactions (dedupe), usage_events partitioned by month"

SQL = """
-- One row per (merchant, transaction id): the constraint that makes counting exactly-once.
-- A partitioned table's unique key must include its partition key, so uniqueness across the
-- months of usage_events lives here. ``content_hash`` (of metric, occurred_at, quantity, GMV
-- and properties) tells a harmless re-send ("duplicate") from a different event reusing the id
-- ("conflict"); ``occurred_at`` finds the event's partition; ``voided_at`` is set once.
CREATE TABLE usage_transactions (
    merchant_id uuid NOT NULL,
    transaction_id varchar(200) NOT NULL,
    content_hash bytea NOT NULL,
    occurred_at timestamptz NOT NULL,
    voided_at timestamptz NULL,
    PRIMARY KEY (merchant_id, transaction_id)
);

-- The raw events as accepted, keyed to the subscription period they belong to (the period
-- containing occurred_at), partitioned by month of occurred_at (UTC months) so that old months
-- detach to cold storage. No unique key here: usage_transactions is the key, and a second
-- index per event would halve ingest throughput. Reads never scan this table for totals:
-- usage_aggregates holds them. ``gmv_minor`` is in the subscription's currency (ingest refuses
-- any other).
CREATE TABLE usage_events (
    merchant_id uuid NOT NULL,
    transaction_id varchar(200) NOT NULL,
    subscription_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    metric varchar(40) NOT NULL,
    occurred_at timestamptz NOT NULL,
    quantity numeric NOT NULL,
    gmv_minor bigint NULL,
    properties jsonb NULL,
    received_at timestamptz NOT NULL DEFAULT current_timestamp,
    voided_at timestamptz NULL
) PARTITION BY RANGE (occurred_at);
-- A merchant's events over time (exports, support), and the row a void marks: the void knows
-- occurred_at from usage_transactions, so it reads one partition through this index.
CREATE INDEX usage_events_merchant_time_idx ON usage_events (merchant_id, occurred_at);

-- Months from 2025-01 to 24 months ahead; service.db.partitions.ensure_partitions keeps
-- adding months ahead at every start. Anything outside them lands in the default partition.
DO $$
DECLARE
    month_start timestamptz := timestamptz '2025-01-01 00:00:00+00';
    last_start timestamptz :=
        (date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC' + interval '24 months')
        AT TIME ZONE 'UTC';
BEGIN
    WHILE month_start <= last_start LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
            'usage_events_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM'),
            to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00"'),
            to_char((month_start + interval '1 month') AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS"+00"'));
        month_start := (month_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
    END LOOP;
END
$$;
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
