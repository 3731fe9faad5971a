"""Finance: stored reconciliation runs (this ledger against Stripe)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-11-23T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "finance_reconciliations"

# One row per run: the range it covered and the whole result (per-currency summary and every
# mismatch with both sides) as a JSON document, written once and only read afterwards.
# ``service.finance.reconcile`` reaches it with SQL; it is operator data, not a tenant table.
SQL = """
CREATE TABLE finance_reconciliations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL,
    first_day date NOT NULL,
    last_day date NOT NULL,
    timezone varchar(64) NOT NULL,
    matched integer NOT NULL,
    mismatch_count integer NOT NULL,
    document jsonb NOT NULL
);
CREATE INDEX finance_reconciliations_latest_idx ON finance_reconciliations (created_at DESC);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
