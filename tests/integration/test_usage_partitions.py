"""usage_events is partitioned by month; partitions are made ahead and never lose a row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service.db.engine import Database
from service.db.partitions import USAGE_EVENTS, MonthPartition, ensure_months, ensure_partitions
from tests.citus_cluster import unsharded


async def _partitions(database: Database) -> set[str]:
    rows = await database.pool.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits"
        " WHERE inhparent = 'usage_events'::regclass"
    )
    return {row["name"] for row in rows}


async def test_the_migration_made_months_ahead_and_a_default(database: Database) -> None:
    names = await _partitions(database)
    this_month = MonthPartition.containing(datetime.now(UTC))
    assert "usage_events_default" in names
    assert "usage_events_2025_01" in names
    ahead = this_month
    for _ in range(24):
        assert USAGE_EVENTS.partition_name(ahead) in names
        ahead = ahead.following()
    assert await ensure_partitions(months_ahead=24) == []


async def test_a_new_month_takes_its_rows_out_of_the_default_partition(
    database: Database,
) -> None:
    merchant_id = uuid.uuid4()
    far = datetime(2035, 3, 15, 12, tzinfo=UTC)
    insert = (
        "INSERT INTO usage_events (merchant_id, transaction_id, subscription_id, period_start,"
        " metric, occurred_at, quantity) VALUES ($1, $2, $1, $3, 'orders', $3, 1)"
    )
    await database.pool.execute(insert, merchant_id, "far-1", far)
    where = await database.pool.fetchval(
        "SELECT tableoid::regclass::text FROM usage_events WHERE merchant_id = $1", merchant_id
    )
    assert unsharded(where) == "usage_events_default"
    try:
        created = await ensure_months(
            USAGE_EVENTS, months_ahead=1, now=datetime(2035, 3, 1, tzinfo=UTC)
        )
        assert created == ["usage_events_2035_03", "usage_events_2035_04"]
        where = await database.pool.fetchval(
            "SELECT tableoid::regclass::text FROM usage_events WHERE merchant_id = $1",
            merchant_id,
        )
        assert unsharded(where) == "usage_events_2035_03"
        # New rows of that month go straight to it.
        await database.pool.execute(insert, merchant_id, "far-2", far)
        count = await database.pool.fetchval(
            "SELECT count(*) FROM usage_events_2035_03 WHERE merchant_id = $1", merchant_id
        )
        assert count == 2
    finally:
        # Leave the session schema as the migrations made it (test_schema compares them).
        await database.pool.execute("DROP TABLE IF EXISTS usage_events_2035_03")
        await database.pool.execute("DROP TABLE IF EXISTS usage_events_2035_04")
        await database.pool.execute(
            "DELETE FROM usage_events_default WHERE merchant_id = $1", merchant_id
        )
