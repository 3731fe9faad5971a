"""Usage ingest as one function call, so that on Citus the whole write goes to the merchant's
shard as one statement (a distributed function, delegated by its merchant argument)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-07T18:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "usage_store(): the ingest write as one function call"

# What ``service.usage.ingest`` sent as one statement with INSERT common table expressions,
# as a function of plain statements. Citus plans INSERT CTEs through intermediate results it
# sends to every node (and commits them there in two phases); it delegates a call of a
# distributed function to the node holding the shard of its distribution argument
# (``service.db.distribution``), where each INSERT ... SELECT below writes that node's shard
# and nothing travels. On plain PostgreSQL it is one call too, its plans kept by PL/pgSQL.
#
# 1. The merchant's subscriptions are what the caller placed the events with (their count and
#    lock versions), or nothing is written and the answer is NULL.
# 2. ``usage_transactions`` takes each (merchant, transaction id) once (ON CONFLICT DO NOTHING:
#    the primary key decides, so concurrent re-sends of one id count once); the ids this call
#    claimed are the answer.
# 3. Only those go into ``usage_events`` and ``usage_aggregates`` (one row per period, metric
#    and connection slot, so concurrent writers never queue on one row).
# The caller sends the events in transaction-id order, and aggregate rows are written in key
# order, so two calls that share ids never deadlock. The columns travel as text joined by
# U+001F (see ``service.usage.ingest``).
SQL = r"""
CREATE FUNCTION usage_store(
    p_merchant_id uuid, p_subscription_count bigint, p_lock_version_sum bigint,
    p_transaction_ids text, p_hashes bytea[], p_micros text, p_metrics text, p_quantities text,
    p_gmv_minor text, p_properties text, p_subscription_ids uuid[], p_period_starts timestamptz[],
    p_period_numbers text, p_slots integer
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    claimed_id text;
    claimed_ids text[] := '{}';
BEGIN
    IF NOT (SELECT count(*) = p_subscription_count
                   AND coalesce(sum(s.lock_version), 0) = p_lock_version_sum
            FROM subscriptions s WHERE s.merchant_id = p_merchant_id) THEN
        RETURN NULL;
    END IF;
    FOR claimed_id IN
        INSERT INTO usage_transactions (merchant_id, transaction_id, content_hash, occurred_at)
        SELECT p_merchant_id, event.transaction_id, event.content_hash,
               timestamptz 'epoch' + event.micros * interval '1 microsecond'
        FROM unnest(string_to_array(p_transaction_ids, E'\x1f'), p_hashes,
                    string_to_array(p_micros, E'\x1f')::bigint[])
             AS event (transaction_id, content_hash, micros)
        ON CONFLICT (merchant_id, transaction_id) DO NOTHING
        RETURNING usage_transactions.transaction_id
    LOOP
        claimed_ids := claimed_ids || claimed_id;
    END LOOP;
    IF cardinality(claimed_ids) = 0 THEN
        RETURN claimed_ids;
    END IF;
    INSERT INTO usage_events (merchant_id, transaction_id, subscription_id, period_start,
                              metric, occurred_at, quantity, gmv_minor, properties)
    SELECT p_merchant_id, event.transaction_id, p_subscription_ids[event.period_no],
           p_period_starts[event.period_no], event.metric,
           timestamptz 'epoch' + event.micros * interval '1 microsecond', event.quantity,
           event.gmv_minor, event.properties::jsonb
    FROM unnest(
        string_to_array(p_transaction_ids, E'\x1f'),
        string_to_array(p_micros, E'\x1f')::bigint[],
        string_to_array(p_metrics, E'\x1f'),
        string_to_array(p_quantities, E'\x1f')::numeric[],
        string_to_array(p_gmv_minor, E'\x1f', '')::bigint[],
        string_to_array(p_properties, E'\x1f', ''),
        string_to_array(p_period_numbers, E'\x1f')::int[]
    ) AS event (transaction_id, micros, metric, quantity, gmv_minor, properties, period_no)
    WHERE event.transaction_id = ANY(claimed_ids);
    INSERT INTO usage_aggregates AS total (merchant_id, subscription_id, period_start,
                                           metric, slot, event_count, quantity, gmv_minor)
    SELECT p_merchant_id, p_subscription_ids[event.period_no], p_period_starts[event.period_no],
           event.metric, pg_backend_pid() % p_slots, count(*), sum(event.quantity),
           coalesce(sum(event.gmv_minor), 0)
    FROM unnest(
        string_to_array(p_transaction_ids, E'\x1f'),
        string_to_array(p_metrics, E'\x1f'),
        string_to_array(p_quantities, E'\x1f')::numeric[],
        string_to_array(p_gmv_minor, E'\x1f', '')::bigint[],
        string_to_array(p_period_numbers, E'\x1f')::int[]
    ) AS event (transaction_id, metric, quantity, gmv_minor, period_no)
    WHERE event.transaction_id = ANY(claimed_ids)
    GROUP BY 2, 3, 4
    ORDER BY 2, 3, 4
    ON CONFLICT (merchant_id, subscription_id, period_start, metric, slot) DO UPDATE
    SET event_count = total.event_count + excluded.event_count,
        quantity = total.quantity + excluded.quantity,
        gmv_minor = total.gmv_minor + excluded.gmv_minor;
    RETURN claimed_ids;
END
$$;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
