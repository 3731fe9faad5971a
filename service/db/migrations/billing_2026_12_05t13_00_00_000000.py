"""Finance page sessions, kept server-side so that logging out or revoking the key ends them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "finance_sessions"

# A tenant table under the platform tenant (operators' sessions belong to no merchant): the
# primary key and every unique key start with merchant_id, so Citus can distribute it by
# merchant like every other tenant table. The cookie holds a random token; only its SHA-256
# is stored. ``ended_at`` is set by a logout or by revoking the key the session was opened with.
SQL = """
CREATE TABLE finance_sessions (
    merchant_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    key_id uuid NOT NULL,
    token_hash varchar(64) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at timestamptz NULL,
    PRIMARY KEY (merchant_id, id),
    UNIQUE (merchant_id, token_hash)
);
CREATE INDEX finance_sessions_open_by_key ON finance_sessions (merchant_id, key_id)
    WHERE ended_at IS NULL;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
