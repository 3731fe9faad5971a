"""Outgoing webhooks: the platform's endpoints, the events we tell them about, one delivery per
event and endpoint (a queue per endpoint × merchant, apart from the Stripe outbox), the log of
every attempt, and the marks that make once-a-period events happen once."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from service.db.ddl import execute_script

ID = "2026-12-06T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outgoing webhooks"

# Tenant tables, Citus-ready from here: the key and every unique constraint lead with
# merchant_id, foreign keys name merchant_id with the row they point at, and rows that belong to
# no merchant (an operator's endpoint for every merchant) live under the platform tenant
# ('00000000-0000-0000-0000-000000000001', ``service.tenancy.platform``). An endpoint belongs to
# whoever registered it (the platform tenant or a merchant); an event, its deliveries and their
# attempts belong to the merchant the event is about. A delivery names its endpoint without a
# foreign key (the endpoint may sit on another shard); ``service.outgoing`` keeps them in step.
#
# ``seq`` orders the deliveries of one endpoint × merchant: a delivery goes only when no earlier
# one of its stream is waiting. ``body`` is the JSON sent, byte for byte (what was signed).
SQL = """
CREATE TABLE webhook_endpoints (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    for_merchant_id uuid NULL,
    url varchar(2048) NOT NULL,
    description varchar(200) NOT NULL DEFAULT '',
    event_types varchar(40)[] NOT NULL,
    signing_secret varchar(100) NOT NULL,
    consecutive_failures integer NOT NULL DEFAULT 0,
    disabled_at timestamptz NULL,
    disabled_reason varchar(300) NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    deleted_at timestamptz NULL,
    PRIMARY KEY (merchant_id, id),
    -- Only the platform's endpoints choose a merchant; a merchant's endpoint hears its own.
    CONSTRAINT webhook_endpoints_one_merchant_is_the_platforms CHECK (
        for_merchant_id IS NULL OR merchant_id = '00000000-0000-0000-0000-000000000001'),
    CONSTRAINT webhook_endpoints_wants_something CHECK (cardinality(event_types) > 0)
);
CREATE INDEX webhook_endpoints_live_idx ON webhook_endpoints (merchant_id)
    WHERE deleted_at IS NULL;

CREATE TABLE outgoing_events (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    id uuid NOT NULL,
    type varchar(40) NOT NULL,
    created_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT current_timestamp,
    api_version varchar(20) NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (merchant_id, id)
);
CREATE INDEX outgoing_events_recorded_idx ON outgoing_events (recorded_at);
CREATE INDEX outgoing_events_merchant_recorded_idx ON outgoing_events (merchant_id, recorded_at);

CREATE TABLE outgoing_deliveries (
    merchant_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    seq bigserial NOT NULL,
    event_id uuid NOT NULL,
    endpoint_merchant_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT current_timestamp,
    lease_until timestamptz NULL,
    retrying_since timestamptz NOT NULL DEFAULT current_timestamp,
    is_replay boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    delivered_at timestamptz NULL,
    last_status_code integer NULL,
    last_error varchar(300) NULL,
    PRIMARY KEY (merchant_id, id),
    FOREIGN KEY (merchant_id, event_id)
        REFERENCES outgoing_events (merchant_id, id) ON DELETE CASCADE,
    CONSTRAINT outgoing_deliveries_status_known CHECK (
        status IN ('pending', 'in_flight', 'delivered', 'failed', 'canceled')),
    CONSTRAINT outgoing_deliveries_lease_while_in_flight CHECK (
        (status = 'in_flight') = (lease_until IS NOT NULL))
);
-- The worker finds due deliveries without reading the done ones, then checks each is the head
-- of its stream (the stream index).
CREATE INDEX outgoing_deliveries_due_idx ON outgoing_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX outgoing_deliveries_stream_idx ON outgoing_deliveries (merchant_id, endpoint_id, seq)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX outgoing_deliveries_event_idx ON outgoing_deliveries (merchant_id, event_id);

CREATE TABLE outgoing_attempts (
    merchant_id uuid NOT NULL,
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    outcome varchar(16) NOT NULL,
    status_code integer NULL,
    latency_ms integer NULL,
    error varchar(300) NULL,
    response_excerpt varchar(500) NULL,
    PRIMARY KEY (merchant_id, delivery_id, attempt),
    FOREIGN KEY (merchant_id, delivery_id)
        REFERENCES outgoing_deliveries (merchant_id, id) ON DELETE CASCADE,
    CONSTRAINT outgoing_attempts_outcome_known CHECK (
        outcome IN ('delivered', 'failed', 'refused'))
);

-- Events that happen once per period (a usage threshold, a cheaper plan, a trial about to end):
-- the primary key, not a check in code, is what makes the second one impossible.
CREATE TABLE outgoing_event_marks (
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    mark varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (merchant_id, mark)
);
CREATE INDEX outgoing_event_marks_created_idx ON outgoing_event_marks (created_at);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def run() -> None:
        await execute_script(SQL)

    manager.add_raw(run)
    return manager
