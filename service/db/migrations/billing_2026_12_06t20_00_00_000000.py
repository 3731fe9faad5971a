"""Ways to pay: the card a merchant's invoices are charged to (our record of Stripe's), the
links where a merchant saves one, each merchant's payment terms, and how each invoice is
collected (charged, or sent with a due date on our clock)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-06T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "ways to pay: payment methods, setup links, payment terms, collection"

# merchants: ``default_payment_method_id`` is the Stripe customer's
# ``invoice_settings.default_payment_method`` as the newest ``customer.updated`` applied said
# (``stripe_customer_event_created``: older events are stale). ``invoice_collection`` and
# ``days_until_due`` are the merchant's payment terms: 'automatic' charges once a default
# payment method exists and sends invoices until then; 'send_invoice' (negotiated contracts
# paying by bank transfer) always sends them; ``days_until_due`` NULL takes the plan's.
#
# invoices: ``collection_method`` is how Stripe collects it (NULL until pushed), ``due_at`` the
# due date of a sent invoice on our clock (the merchant's: a test clock's for one on a clock),
# ``awaits_payment_method`` marks one sent because no way to pay was on file (paid with the
# first one saved), ``overdue_stage`` the dunning of an unpaid sent invoice: 1 past due, 2 the
# subscription suspended.
#
# Tenant tables, Citus-ready: ``payment_methods`` (what payment_method.attached/detached said
# of each card, keyed by the merchant and Stripe's id) and ``payment_setup_links`` (a link's
# token is stored as its SHA-256 only; the token names its merchant, so a look-up goes to one
# shard).
SQL = """
ALTER TABLE merchants ADD COLUMN default_payment_method_id varchar(255) NULL;
ALTER TABLE merchants ADD COLUMN stripe_customer_event_created bigint NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN invoice_collection varchar(16) NOT NULL DEFAULT 'automatic';
ALTER TABLE merchants ADD COLUMN days_until_due integer NULL;
ALTER TABLE merchants ADD CONSTRAINT merchants_invoice_collection_known
    CHECK (invoice_collection IN ('automatic', 'send_invoice'));
ALTER TABLE merchants ADD CONSTRAINT merchants_days_until_due_range
    CHECK (days_until_due BETWEEN 1 AND 365);

ALTER TABLE invoices ADD COLUMN collection_method varchar(24) NULL;
ALTER TABLE invoices ADD COLUMN due_at timestamptz NULL;
ALTER TABLE invoices ADD COLUMN awaits_payment_method boolean NOT NULL DEFAULT false;
ALTER TABLE invoices ADD COLUMN overdue_stage smallint NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD CONSTRAINT invoices_collection_method_known
    CHECK (collection_method IN ('charge_automatically', 'send_invoice'));
-- The worker finds sent invoices past their due date without reading the settled ones.
CREATE INDEX invoices_overdue_idx ON invoices (due_at)
    WHERE status = 'open' AND due_at IS NOT NULL AND overdue_stage < 2;

CREATE TABLE payment_methods (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    id varchar(255) NOT NULL,
    type varchar(40) NOT NULL,
    card_brand varchar(32) NULL,
    card_last4 varchar(4) NULL,
    card_exp_month smallint NULL,
    card_exp_year smallint NULL,
    is_attached boolean NOT NULL DEFAULT true,
    event_created bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE payment_setup_links (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    token_hash varchar(64) NOT NULL,
    success_url varchar(2048) NOT NULL,
    cancel_url varchar(2048) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    expires_at timestamptz NOT NULL,
    sessions_made integer NOT NULL DEFAULT 0,
    checkout_session_id varchar(255) NULL,
    checkout_url varchar(2048) NULL,
    checkout_expires_at timestamptz NULL,
    completed_at timestamptz NULL,
    PRIMARY KEY (merchant_id, id),
    CONSTRAINT payment_setup_links_token UNIQUE (merchant_id, token_hash)
);
CREATE INDEX payment_setup_links_expires_idx ON payment_setup_links (expires_at);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
