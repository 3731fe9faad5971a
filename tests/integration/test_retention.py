"""Nothing grows forever: idempotency records, processed Stripe events, sent outbox rows, old
reconciliation runs, outgoing events with their delivery logs (and, much later, the marks of
once-a-period events), and audit entries in the default partition are removed by the worker's
retention pass, in small batches; old audit months are dropped whole by ``billing partitions``
(DDL, never the worker); each removal is counted in ``retention_totals``; what is young, or
still to do, stays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service import retention
from service.db import partitions
from service.db.engine import Database
from service.settings import RetentionSettings
from tests.citus_cluster import unsharded
from tests.integration.conftest import make_tenant

DAY = timedelta(days=1)


async def _totals(database: Database) -> dict[str, int]:
    rows = await database.pool.fetch("SELECT table_name, rows_removed FROM retention_totals")
    return {row["table_name"]: row["rows_removed"] for row in rows}


async def _seed(database: Database, now: datetime) -> dict[str, object]:
    """Expired and kept rows of every kind, tagged so the test can find its own."""
    pool = database.pool
    tag = uuid.uuid4().hex[:12]
    scope = f"retention-{tag}"
    for n, age in enumerate([8, 8, 9, 10, 30, 6]):  # days; the last one is kept (7 days)
        await pool.execute(
            "INSERT INTO idempotency_records (scope, idempotency_key, request_hash, status_code,"
            " response_body, created_at) VALUES ($1, $2, 'h', 201, '{}'::jsonb, $3)",
            scope,
            f"key-{n}",
            now - age * DAY,
        )
    inbox = [  # (status, days since processed or received); processed > 90 days goes
        ("processed", 91),
        ("processed", 120),
        ("processed", 400),
        ("processed", 89),
        ("parked", 400),
        ("pending", 400),
    ]
    for n, (status, age) in enumerate(inbox):
        at = now - age * DAY
        await pool.execute(
            "INSERT INTO stripe_inbox (event_id, event_type, event_created, payload, status,"
            " received_at, processed_at) VALUES ($1, 'invoice.paid', 0, '{}'::jsonb, $2, $3, $4)",
            f"evt_{tag}_{n}",
            status,
            at,
            at if status == "processed" else None,
        )
    tenant = await make_tenant("Retention shop")
    outbox = [("sent", 31), ("sent", 60), ("sent", 365), ("sent", 29), ("parked", 365)]
    for n, (status, age) in enumerate(outbox):
        at = now - age * DAY
        await pool.execute(
            "INSERT INTO stripe_outbox (merchant_id, stream, command, payload, idempotency_key,"
            " status, created_at, sent_at) VALUES ($1, $2, 'customer.update', '{}'::jsonb,"
            " $3, $4, $5, $6)",
            tenant.merchant_id,
            str(tenant.merchant_id),
            f"retention-{tag}-{n}",
            status,
            at,
            at if status == "sent" else None,
        )
    for age in (800, 731, 700):  # days; the last is kept (730), and so is the latest run
        await pool.execute(
            "INSERT INTO finance_reconciliations (created_at, first_day, last_day, timezone,"
            " matched, mismatch_count, document)"
            " VALUES ($1, '2020-01-01', '2020-01-31', $2, 0, 0, '{}'::jsonb)",
            now - age * DAY,
            tag,
        )
    # Outgoing events (days since recorded, the status of their one delivery): older than 30
    # days and delivered, given up or canceled go with their delivery and its log.
    events = [(31, "delivered"), (40, "failed"), (60, "canceled"), (29, "delivered"),
              (400, "pending")]  # fmt: skip
    event_ids = []
    for age, status in events:
        event_id = uuid.uuid4()
        event_ids.append(event_id)
        at = now - age * DAY
        await pool.execute(
            "INSERT INTO outgoing_events (merchant_id, id, type, created_at, recorded_at,"
            " api_version, body) VALUES ($1, $2, 'invoice.paid', $3, $3, '2026-12-05', '{}')",
            tenant.merchant_id,
            event_id,
            at,
        )
        delivery_id = await pool.fetchval(
            "INSERT INTO outgoing_deliveries (merchant_id, event_id, endpoint_merchant_id,"
            " endpoint_id, status, attempts, created_at) VALUES ($1, $2, $1, $3, $4, 1, $5)"
            " RETURNING id",
            tenant.merchant_id,
            event_id,
            uuid.uuid4(),
            status,
            at,
        )
        await pool.execute(
            "INSERT INTO outgoing_attempts (merchant_id, delivery_id, attempt, attempted_at,"
            " outcome) VALUES ($1, $2, 1, $3, 'failed')",
            tenant.merchant_id,
            delivery_id,
            at,
        )
    for n, age in enumerate([401, 500, 399]):  # the marks of once-a-period events: 400 days
        await pool.execute(
            "INSERT INTO outgoing_event_marks (merchant_id, mark, created_at) VALUES ($1, $2, $3)",
            tenant.merchant_id,
            f"retention:{n}",
            now - age * DAY,
        )
    return {
        "scope": scope,
        "tag": tag,
        "merchant_id": tenant.merchant_id,
        "event_ids": event_ids,
    }


async def test_expired_rows_go_in_small_batches_and_the_rest_stays(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    seeded = await _seed(database, now)
    before = await _totals(database)
    settings = RetentionSettings(batch_rows=2, audit_months=0)

    # One batch a rule: at most two rows of each kind go.
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_PASS", 1)
    first = await retention.run_pass(settings, now=now)
    assert first.removed == {
        "idempotency_records": 2,
        "stripe_inbox": 2,
        "stripe_outbox": 2,
        "finance_reconciliations": 2,
        "outgoing_events": 2,
        "outgoing_event_marks": 2,
        "payment_setup_links": 0,  # none expired long ago here (test_payment_setup.py)
    }
    monkeypatch.undo()
    second = await retention.run_pass(settings, now=now)
    assert second.removed == {
        "idempotency_records": 3,
        "stripe_inbox": 1,
        "stripe_outbox": 1,
        "finance_reconciliations": 0,
        "outgoing_events": 1,
        "outgoing_event_marks": 0,
        "payment_setup_links": 0,
    }
    assert (await retention.run_pass(settings, now=now)).total == 0

    pool = database.pool
    kept_keys = await pool.fetch(
        "SELECT idempotency_key FROM idempotency_records WHERE scope = $1", seeded["scope"]
    )
    assert [row["idempotency_key"] for row in kept_keys] == ["key-5"]
    kept_events = await pool.fetch(
        "SELECT event_id, status FROM stripe_inbox WHERE event_id LIKE $1 ORDER BY event_id",
        f"evt_{seeded['tag']}_%",
    )
    assert [(row["event_id"][-1], row["status"]) for row in kept_events] == [
        ("3", "processed"),
        ("4", "parked"),
        ("5", "pending"),
    ]
    kept_pushes = await pool.fetch(
        "SELECT idempotency_key, status FROM stripe_outbox WHERE merchant_id = $1"
        " AND idempotency_key LIKE 'retention-%' ORDER BY idempotency_key",
        seeded["merchant_id"],
    )
    assert [(row["idempotency_key"][-1], row["status"]) for row in kept_pushes] == [
        ("3", "sent"),
        ("4", "parked"),
    ]
    kept_runs = await pool.fetchval(
        "SELECT count(*) FROM finance_reconciliations WHERE timezone = $1", seeded["tag"]
    )
    assert kept_runs == 1
    kept_events = await pool.fetch(
        "SELECT e.id, d.status, (SELECT count(*) FROM outgoing_attempts a"
        "  WHERE a.merchant_id = d.merchant_id AND a.delivery_id = d.id) AS logged"
        " FROM outgoing_events e JOIN outgoing_deliveries d"
        "  ON d.merchant_id = e.merchant_id AND d.event_id = e.id"
        " WHERE e.merchant_id = $1 ORDER BY e.recorded_at",
        seeded["merchant_id"],
    )
    assert [(row["id"], row["status"], row["logged"]) for row in kept_events] == [
        (seeded["event_ids"][4], "pending", 1),  # a year old, but still waiting to go
        (seeded["event_ids"][3], "delivered", 1),
    ]
    gone_deliveries = await pool.fetchval(
        "SELECT count(*) FROM outgoing_deliveries WHERE merchant_id = $1 AND event_id = ANY($2)",
        seeded["merchant_id"],
        seeded["event_ids"][:3],
    )
    assert gone_deliveries == 0
    kept_marks = await pool.fetch(
        "SELECT mark FROM outgoing_event_marks WHERE merchant_id = $1", seeded["merchant_id"]
    )
    assert [row["mark"] for row in kept_marks] == ["retention:2"]

    after = await _totals(database)
    for table, removed in (
        ("idempotency_records", 5),
        ("stripe_inbox", 3),
        ("stripe_outbox", 3),
        ("finance_reconciliations", 2),
        ("outgoing_events", 3),
        ("outgoing_event_marks", 2),
    ):
        assert after[table] - before.get(table, 0) == removed


async def test_zero_keeps_everything(database: Database) -> None:
    now = datetime.now(UTC)
    await _seed(database, now)
    keep_all = RetentionSettings(
        idempotency_days=0,
        stripe_events_days=0,
        outbox_sent_days=0,
        reconciliations_days=0,
        audit_months=0,
        webhook_events_days=0,
        payment_links_days=0,
    )
    assert (await retention.run_pass(keep_all, now=now)).total == 0


async def test_audit_months_past_retention_are_dropped_by_partitions_not_by_the_worker(
    database: Database,
) -> None:
    pool = database.pool
    tag = uuid.uuid4().hex[:12]
    try:
        await _audit_months_are_dropped(database, tag)
    finally:  # leave the session schema as the migrations made it (test_schema compares)
        await pool.execute("DROP TABLE IF EXISTS audit_log_2019_01")
        await pool.execute("DELETE FROM audit_log WHERE entity_id = $1", tag)


async def _audit_months_are_dropped(database: Database, tag: str) -> None:
    pool = database.pool
    table = partitions.AUDIT_LOG
    platform = "00000000-0000-0000-0000-000000000001"
    insert = (
        "INSERT INTO audit_log (merchant_id, actor_role, entity, entity_id, action, at)"
        " VALUES ($1, 'system', 'test', $2, 'aged', $3)"
    )
    old_month = datetime(2019, 1, 15, tzinfo=UTC)
    await pool.execute(insert, platform, tag, old_month)
    await pool.execute(insert, platform, tag, old_month + timedelta(days=3))
    # The month gets its own partition (the rows move out of the default one) ...
    assert await partitions.ensure_months(table, 0, now=old_month) == ["audit_log_2019_01"]
    # ... while a row of a month without one stays in the default partition.
    await pool.execute(insert, platform, tag, datetime(2019, 6, 10, tzinfo=UTC))
    young = datetime.now(UTC) - timedelta(days=30)
    await pool.execute(insert, platform, tag, young)
    where = await pool.fetch(
        "SELECT tableoid::regclass::text AS part FROM audit_log WHERE entity_id = $1 ORDER BY at",
        tag,
    )
    assert [unsharded(row["part"]) for row in where][:3] == [
        "audit_log_2019_01",
        "audit_log_2019_01",
        "audit_log_default",
    ]
    before = await _totals(database)

    # Seven years from December 2026 back: everything before December 2019 goes.
    settings = RetentionSettings(
        idempotency_days=0,
        stripe_events_days=0,
        outbox_sent_days=0,
        reconciliations_days=0,
        audit_months=84,
        webhook_events_days=0,
        payment_links_days=0,
        batch_rows=10,
    )
    now = datetime(2026, 12, 5, tzinfo=UTC)
    # The worker's pass deletes the straggler of the default partition only: no DDL.
    summary = await retention.run_pass(settings, now=now)
    assert summary.removed == {"audit_log": 1}
    assert await pool.fetchval("SELECT to_regclass('audit_log_2019_01')") is not None
    # `billing partitions` drops the month whole.
    dropped = await retention.drop_expired_audit_months(settings, now=now)
    assert dropped.removed == {"audit_log": 2}
    assert "audit_log_2019_01" not in {
        row["relname"]
        for row in await pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'audit_log'::regclass"
        )
    }
    assert await pool.fetchval("SELECT to_regclass('audit_log_2019_01')") is None
    left = await pool.fetch("SELECT at FROM audit_log WHERE entity_id = $1", tag)
    assert [row["at"] for row in left] == [young]
    assert (await _totals(database))["audit_log"] - before.get("audit_log", 0) == 3
    assert (await retention.run_pass(settings, now=now)).total == 0
    assert (await retention.drop_expired_audit_months(settings, now=now)).total == 0
