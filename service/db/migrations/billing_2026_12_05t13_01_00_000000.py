"""The Stripe inbox keeps a validly signed event it cannot process: its raw bytes, parked."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T13:01:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe_inbox.raw for events that cannot be processed"

# A signed event is never refused for its content (Stripe would redeliver it for days): one
# that jsonb cannot hold (a NUL), that is nested too deep, or whose head is out of range
# (``created`` beyond 64 bits) is stored as the bytes Stripe signed, with ``payload`` NULL,
# parked with the reason in ``last_error``.
SQL = """
ALTER TABLE stripe_inbox ADD COLUMN raw bytea NULL;
ALTER TABLE stripe_inbox ALTER COLUMN payload DROP NOT NULL;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
