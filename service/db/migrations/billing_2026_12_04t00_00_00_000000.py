"""The platform tenant: one reserved merchant row that owns rows belonging to no merchant."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-04T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "platform tenant"

# Platform rows (operator sessions, operator endpoints, catalog pushes, operator audit entries)
# live in tenant tables under this fixed merchant id, so every tenant table has a non-NULL shard
# key on Citus. It is never a customer: ``service.tenancy.platform`` keeps it out of every
# merchant lookup, listing, finance figure and export. The id must match
# ``service.tenancy.platform.PLATFORM_MERCHANT_ID``.
SQL = """
INSERT INTO merchants (id, name, contact_email, timezone, currency, status)
VALUES ('00000000-0000-0000-0000-000000000001', 'Kefu platform (not a customer)', '',
        'UTC', 'CNY', 'closed')
ON CONFLICT (id) DO NOTHING;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
