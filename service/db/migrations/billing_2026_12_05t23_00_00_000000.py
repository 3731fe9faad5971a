"""Stripe outbox leases: a row is claimed (``in_flight`` until ``lease_until``) and committed
before Stripe is called, so no row lock is held while Stripe answers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T23:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe_outbox in_flight leases"

# ``in_flight`` rows belong to the worker that claimed them until ``lease_until``; after that any
# worker may claim them again. The lease exists exactly while the row is in flight.
SQL = """
ALTER TABLE stripe_outbox ADD COLUMN lease_until timestamptz NULL;
ALTER TABLE stripe_outbox DROP CONSTRAINT stripe_outbox_status_known;
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_status_known
    CHECK (status IN ('pending', 'in_flight', 'sent', 'parked'));
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_lease_while_in_flight
    CHECK ((status = 'in_flight') = (lease_until IS NOT NULL));
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
