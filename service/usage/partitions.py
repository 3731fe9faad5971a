"""Monthly partitions of ``usage_events``: made ahead of time, at every start of the service and
by the worker, so that events never land in the default partition in normal operation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process that adds partitions.
_PARTITION_LOCK = 7_240_312

_EXISTING = """
SELECT child.relname
FROM pg_inherits
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
WHERE parent.relname = 'usage_events'
"""


@dataclass(frozen=True, slots=True)
class MonthPartition:
    year: int
    month: int

    @property
    def name(self) -> str:
        return f"usage_events_{self.year:04d}_{self.month:02d}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        following = self.following()
        return datetime(following.year, following.month, 1, tzinfo=UTC)

    def following(self) -> MonthPartition:
        index = self.year * 12 + self.month  # the next month, zero-based month arithmetic
        return MonthPartition(index // 12, index % 12 + 1)

    @classmethod
    def containing(cls, instant: datetime) -> MonthPartition:
        utc = instant.astimezone(UTC)
        return cls(utc.year, utc.month)


def months_from(first: MonthPartition, count: int) -> list[MonthPartition]:
    months = [first]
    while len(months) < count:
        months.append(months[-1].following())
    return months


async def ensure_partitions(months_ahead: int = 24, *, now: datetime | None = None) -> list[str]:
    """Create the partitions for this month and the ``months_ahead`` that follow, where missing.

    Safe from several processes at once (an advisory lock serializes them). Rows that already
    sit in the default partition for a month being created are moved into it.
    Returns the names of the partitions created.
    """
    wanted = months_from(MonthPartition.containing(now or SYSTEM_CLOCK.now()), months_ahead + 1)
    async with current_database().pool.acquire() as connection:
        existing = {row["relname"] for row in await connection.fetch(_EXISTING)}
        missing = [month for month in wanted if month.name not in existing]
        if not missing:
            return []
        created = []
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            existing = {row["relname"] for row in await connection.fetch(_EXISTING)}
            for month in missing:
                if month.name not in existing:
                    await _create(connection, month)
                    created.append(month.name)
    if created:
        log.info("usage_partitions_created", partitions=created)
    return created


async def _create(connection: asyncpg.Connection, month: MonthPartition) -> None:
    """Build the month as its own table, move any of its rows out of the default partition,
    then attach it (attaching checks the default partition holds none of its range)."""
    # Identifiers cannot be parameters: the name is built from two integers above.
    name = month.name
    bounds = f"FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
    await connection.execute(
        f"CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    await connection.execute(
        f"WITH moved AS (DELETE FROM usage_events_default"
        f" WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)"
        f" INSERT INTO {name} SELECT * FROM moved",
        month.start,
        month.end,
    )
    await connection.execute(
        f"ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES {bounds}"
    )
