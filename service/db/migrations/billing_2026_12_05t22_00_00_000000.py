"""Credit balance movements: every amount that enters or leaves a merchant's credit balance,
and credit notes with the reason ``credit_balance`` (the balance reaching an invoice)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-05T22:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "credit balance movements"

# A tenant table, Citus-ready: the key and every unique constraint lead with merchant_id, and
# its foreign keys name merchant_id with the row they point at. Money moves once: an invoice
# carries credit in (or takes it as a line) once, a credit note spends it once, and the
# balance after a movement is never negative. ``seq`` numbers a merchant's movements 1, 2, 3…
# (taken while the balance row is locked; two writers that did not lock cannot both commit).
SQL = """
ALTER TABLE credit_notes ADD CONSTRAINT credit_notes_merchant_id_id UNIQUE (merchant_id, id);
ALTER TABLE credit_notes DROP CONSTRAINT credit_notes_reason_known;
ALTER TABLE credit_notes ADD CONSTRAINT credit_notes_reason_known CHECK (
    reason IN ('sla_credit', 'goodwill', 'billing_error', 'duplicate', 'stripe_refund',
               'credit_balance'));

CREATE TABLE credit_balance_movements (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    seq bigint NOT NULL,
    kind varchar(20) NOT NULL,
    amount_minor bigint NOT NULL,
    currency varchar(3) NOT NULL,
    balance_after_minor bigint NOT NULL,
    invoice_id uuid NULL,
    credit_note_id uuid NULL,
    memo varchar(300) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, id),
    CONSTRAINT credit_balance_movements_kind_known CHECK (
        kind IN ('opening', 'carried_forward', 'applied_to_invoice', 'credit_note', 'refund')),
    CONSTRAINT credit_balance_movements_direction CHECK (
        CASE WHEN kind IN ('opening', 'carried_forward') THEN amount_minor > 0
             ELSE amount_minor < 0 END),
    CONSTRAINT credit_balance_movements_not_negative CHECK (balance_after_minor >= 0),
    CONSTRAINT credit_balance_movements_names_its_invoice CHECK (
        (kind = 'opening') = (invoice_id IS NULL)),
    CONSTRAINT credit_balance_movements_names_its_credit_note CHECK (
        (kind IN ('credit_note', 'refund')) = (credit_note_id IS NOT NULL)),
    CONSTRAINT credit_balance_movements_in_order UNIQUE (merchant_id, seq),
    CONSTRAINT credit_balance_movements_one_per_credit_note UNIQUE (merchant_id, credit_note_id),
    FOREIGN KEY (merchant_id, invoice_id)
        REFERENCES invoices (merchant_id, id) ON DELETE RESTRICT,
    FOREIGN KEY (merchant_id, credit_note_id)
        REFERENCES credit_notes (merchant_id, id) ON DELETE RESTRICT
);
-- An invoice carries credit into the balance, or takes it as a line, once.
CREATE UNIQUE INDEX credit_balance_movements_one_per_invoice
    ON credit_balance_movements (merchant_id, invoice_id, kind)
    WHERE kind IN ('carried_forward', 'applied_to_invoice');
CREATE UNIQUE INDEX credit_balance_movements_one_opening
    ON credit_balance_movements (merchant_id) WHERE kind = 'opening';

-- Balances from before movements were recorded open the history, so that the movements of
-- every merchant add up to its balance.
INSERT INTO credit_balance_movements (merchant_id, seq, kind, amount_minor, currency,
    balance_after_minor, memo, created_at)
SELECT merchant_id, 1, 'opening', balance_minor, currency, balance_minor,
       'balance before its movements were recorded', now()
FROM credit_balances WHERE balance_minor > 0;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
