"""The period close walks the ended periods in period order, a page at a time from where the
last page ended: an index in that order makes each page cost its own rows, not every ended
period before it (the close's cost per invoice grew with the number of periods)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-08T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "ended periods in the close's order"

SQL = """
CREATE INDEX subscription_periods_close_order_idx
    ON subscription_periods (period_start, id) WHERE status = 'ended';
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
