"""Stripe outbox: what a push is about (``subject``), so that a row parked for a person holds
back only the rows that depend on it; rows an operator skipped or resolved by hand, with their
reason."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-06T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe_outbox subject, skipped and resolved rows"

# ``subject``: the thing in Stripe a row changes — 'invoice <id>' for an invoice's push, payment
# retry, void, payment look-up and credit notes; 'plan <code> v<version>' for the catalog;
# 'customer details' for an update of the customer; '' for the rest (the customer's creation,
# rows of unknown kind): such a row concerns the whole stream. A parked row holds back the later
# rows of its stream with its subject, or all of them when its subject is ''
# (``webhooks.outbox``). Existing rows get theirs from their command and payload.
# ``skipped`` (never sent, by an operator's decision) and ``resolved`` (done by hand in Stripe,
# recorded here) rows are done, like sent ones; ``resolution`` says why, ``resolved_at`` when.
SQL = """
ALTER TABLE stripe_outbox ADD COLUMN subject varchar(80) NOT NULL DEFAULT '';
ALTER TABLE stripe_outbox ADD COLUMN resolution text NULL;
ALTER TABLE stripe_outbox ADD COLUMN resolved_at timestamptz NULL;
UPDATE stripe_outbox o SET subject = CASE
    WHEN o.command LIKE 'invoice.%' THEN 'invoice ' || (o.payload ->> 'invoice_id')
    WHEN o.command = 'credit_note.push' THEN coalesce(
        (SELECT 'invoice ' || c.invoice_id::text FROM credit_notes c
         WHERE c.merchant_id = o.merchant_id AND c.id = (o.payload ->> 'credit_note_id')::uuid),
        '')
    WHEN o.command = 'catalog.plan' THEN
        'plan ' || (o.payload ->> 'code') || ' v' || (o.payload ->> 'version')
    WHEN o.command = 'customer.update' THEN 'customer details'
    ELSE ''
END;
ALTER TABLE stripe_outbox DROP CONSTRAINT stripe_outbox_status_known;
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_status_known
    CHECK (status IN ('pending', 'in_flight', 'sent', 'parked', 'skipped', 'resolved'));
ALTER TABLE stripe_outbox ADD CONSTRAINT stripe_outbox_resolution_when_done_by_hand
    CHECK ((status IN ('skipped', 'resolved'))
           = (resolution IS NOT NULL AND resolved_at IS NOT NULL));
DROP INDEX stripe_outbox_unsent_idx;
CREATE INDEX stripe_outbox_unsent_idx ON stripe_outbox (stream, id)
    WHERE status IN ('pending', 'in_flight', 'parked');
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
