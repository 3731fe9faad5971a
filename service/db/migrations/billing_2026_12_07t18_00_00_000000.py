"""Citus: tenant tables keyed by (merchant_id, id), Stripe ids unique per merchant, the owners of
Stripe objects in a table of their own, API keys without a foreign key, and an invoice-line
guard that reads nothing but the row it guards."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script, transaction_connection

ID = "2026-12-07T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tenant keys lead with merchant_id; stripe_owners; Citus-safe guards"

# Citus distributes every tenant table by merchant_id (``service.db.distribution``), and a
# distributed table's primary key and unique constraints must include it. These tables were
# keyed by ``id`` alone; three of them also had UNIQUE (merchant_id, id) for the foreign keys
# that point at them, which the new primary key makes redundant. Whatever foreign keys point at
# those three (this schema's, and any a later branch added before this ran) are dropped, and put
# back on the new primary keys exactly as they were.
KEYED_BY_MERCHANT_AND_ID = (
    "subscriptions",
    "subscription_periods",
    "subscription_events",
    "contracts",
    "pending_invoice_lines",
    "invoices",
    "invoice_lines",
    "credit_notes",
    "sla_reports",
    "payments",
    "refunds",
    "disputes",
)
REDUNDANT_UNIQUES = {
    "subscriptions": "subscriptions_merchant_id_id",
    "invoices": "invoices_merchant_id_id",
    "credit_notes": "credit_notes_merchant_id_id",
}

_FOREIGN_KEYS_TO = """
SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'f' AND confrelid = ANY($1::regclass[])
ORDER BY conrelid::regclass::text, conname
"""

_PRIMARY_KEY_OF = """
SELECT conname FROM pg_constraint WHERE contype = 'p' AND conrelid = $1::regclass
"""

# - Stripe ids are unique per merchant (the handlers find the merchant first), and the payment
#   look-ups by Stripe id lead with merchant_id too.
# - ``stripe_owners``: which merchant a Stripe customer, payment intent or charge belongs to, so
#   a webhook handler knows the merchant (and its shard) before it touches a tenant table. A
#   reference table on Citus (small, written when a customer is made or a payment recorded, read
#   by every webhook); rows that exist already are copied in.
# - ``api_keys`` is a reference table on Citus, which cannot hold a foreign key to the
#   distributed ``merchants``: ``service.tenancy.keys`` checks the merchant exists when it issues
#   a key (merchants are never deleted), and a test checks no key names a missing merchant.
# - The invoice-line guard looked the invoice up, a query across tables that Citus would run
#   from inside a shard. Every invoice is written finalized with its lines in one transaction
#   (``service.invoicing.invoices``: nothing makes a draft), so a line never changes once
#   written: the guard refuses any update or delete of a line, reading nothing else.
SQL = """
DROP INDEX invoices_stripe_invoice_idx;
CREATE UNIQUE INDEX invoices_stripe_invoice_idx ON invoices (merchant_id, stripe_invoice_id)
    WHERE stripe_invoice_id IS NOT NULL;
ALTER TABLE refunds DROP CONSTRAINT refunds_stripe_id;
ALTER TABLE refunds ADD CONSTRAINT refunds_stripe_id UNIQUE (merchant_id, stripe_refund_id);
ALTER TABLE disputes DROP CONSTRAINT disputes_stripe_id;
ALTER TABLE disputes ADD CONSTRAINT disputes_stripe_id UNIQUE (merchant_id, stripe_dispute_id);
DROP INDEX payments_intent_idx;
DROP INDEX payments_charge_idx;
CREATE INDEX payments_intent_idx ON payments (merchant_id, stripe_payment_intent_id);
CREATE INDEX payments_charge_idx ON payments (merchant_id, stripe_charge_id);

CREATE TABLE stripe_owners (
    stripe_id varchar(80) PRIMARY KEY,
    merchant_id uuid NOT NULL,
    kind varchar(16) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    CONSTRAINT stripe_owners_kind_known CHECK (kind IN ('customer', 'payment_intent', 'charge'))
);
INSERT INTO stripe_owners (stripe_id, merchant_id, kind)
SELECT stripe_customer_id, id, 'customer' FROM merchants WHERE stripe_customer_id IS NOT NULL
UNION ALL
SELECT stripe_payment_intent_id, merchant_id, 'payment_intent' FROM payments
WHERE stripe_payment_intent_id IS NOT NULL
UNION ALL
SELECT stripe_charge_id, merchant_id, 'charge' FROM payments WHERE stripe_charge_id IS NOT NULL
ON CONFLICT (stripe_id) DO NOTHING;

ALTER TABLE api_keys DROP CONSTRAINT api_keys_merchant_id_fkey;

CREATE OR REPLACE FUNCTION invoice_lines_refuse_edits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lines of invoice % never change once written (invoices are written'
        ' finalized; correct one with a credit note)', OLD.invoice_id;
END $$;
"""


async def _rekey() -> None:
    connection = transaction_connection()
    pointing = await connection.fetch(_FOREIGN_KEYS_TO, list(REDUNDANT_UNIQUES))
    for key in pointing:
        await connection.execute(
            f"ALTER TABLE {key['table_name']} DROP CONSTRAINT {key['conname']}"
        )
    for table, unique in REDUNDANT_UNIQUES.items():
        await connection.execute(f"ALTER TABLE {table} DROP CONSTRAINT {unique}")
    for table in KEYED_BY_MERCHANT_AND_ID:
        primary_key = await connection.fetchval(_PRIMARY_KEY_OF, table)
        await connection.execute(f"ALTER TABLE {table} DROP CONSTRAINT {primary_key}")
        await connection.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (merchant_id, id)"
        )
    for key in pointing:
        await connection.execute(
            f"ALTER TABLE {key['table_name']} ADD CONSTRAINT {key['conname']} {key['definition']}"
        )


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await _rekey()
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
