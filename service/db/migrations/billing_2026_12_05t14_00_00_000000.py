"""Invoice numbers unique across the ledger: a prefix per merchant and one gapless sequence per
merchant, in place of the per-year counters that gave every merchant ``KB-2026-000001``."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "invoice number prefixes and per-merchant sequences"

# ``invoice_number_prefixes`` is a small reference table on Citus (looked up by merchant,
# unique by prefix, no foreign key to the distributed ``merchants``: the code that writes it
# names an existing merchant, and a test checks every prefix has its merchant). A prefix holds
# at least one letter, so a new number never reads like an old ``KB-2026-…`` one.
#
# ``invoice_number_sequences`` is a tenant table keyed by ``merchant_id``: bumped inside the
# finalizing transaction, so a rollback gives the number back and concurrent finalizes of one
# merchant queue on the row. It starts where the merchant's per-year counters ended together
# (every number they gave out, all years), so numbering goes on gapless: after
# ``KB-2026-000005`` comes ``KB-<prefix>-000006``. Finalized invoices keep their numbers.
SQL = """
CREATE TABLE invoice_number_prefixes (
    merchant_id uuid PRIMARY KEY,
    prefix varchar(8) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoice_number_prefixes_prefix_unique UNIQUE (prefix),
    CONSTRAINT invoice_number_prefixes_form CHECK (
        prefix ~ '^[0-9A-HJKMNP-TV-Z]{4,8}$' AND prefix ~ '[A-Z]')
);

CREATE TABLE invoice_number_sequences (
    merchant_id uuid PRIMARY KEY REFERENCES merchants (id) ON DELETE RESTRICT,
    last_number bigint NOT NULL DEFAULT 0,
    CONSTRAINT invoice_number_sequences_not_negative CHECK (last_number >= 0)
);

INSERT INTO invoice_number_sequences (merchant_id, last_number)
SELECT merchant_id, sum(last_number) FROM invoice_number_counters GROUP BY merchant_id;

DROP TABLE invoice_number_counters;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
