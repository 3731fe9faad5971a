"""Stripe outbox: every row has its merchant (catalog pushes the platform tenant), and its key
and idempotency key lead with merchant_id, so Citus can distribute it with the rest."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-07T18:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe_outbox under the platform tenant, keyed by (merchant_id, id)"

# Catalog pushes belong to no merchant: they move under the platform tenant
# (``service.tenancy.platform.PLATFORM_MERCHANT_ID``), so the shard key is never NULL; their
# stream stays 'catalog'. Idempotency keys are made from the row id, unique across the table by
# construction; the constraint now says it per merchant, as Citus requires.
SQL = """
UPDATE stripe_outbox SET merchant_id = '00000000-0000-0000-0000-000000000001'
WHERE merchant_id IS NULL;
ALTER TABLE stripe_outbox ALTER COLUMN merchant_id SET NOT NULL;
ALTER TABLE stripe_outbox DROP CONSTRAINT stripe_outbox_pkey;
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_pkey PRIMARY KEY (merchant_id, id);
ALTER TABLE stripe_outbox DROP CONSTRAINT stripe_outbox_idempotency_key;
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_idempotency_key
    UNIQUE (merchant_id, idempotency_key);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
