"""Monthly partitions of the tables partitioned by month (``usage_events`` by ``occurred_at``,
``audit_log`` by ``at``): made ahead of time by ``billing migrate`` and ``billing partitions``
(DDL, so never by ``serve`` or ``worker``; a daily CronJob keeps two years ahead), so that rows
never land in the default partition in normal operation; and, for retention, whole months
before a cutoff detached and dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process that adds partitions.
_PARTITION_LOCK = 7_240_312


@dataclass(frozen=True, slots=True, order=True)
class MonthPartition:
    year: int
    month: int

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

    def preceding(self, months: int) -> MonthPartition:
        index = self.year * 12 + self.month - 1 - months
        return MonthPartition(index // 12, index % 12 + 1)

    @classmethod
    def containing(cls, instant: datetime) -> MonthPartition:
        utc = instant.astimezone(UTC)
        return cls(utc.year, utc.month)


@dataclass(frozen=True, slots=True)
class MonthlyTable:
    """A table partitioned by month of ``column`` (UTC months), with a default partition."""

    name: str
    column: str

    def partition_name(self, month: MonthPartition) -> str:
        return f"{self.name}_{month.year:04d}_{month.month:02d}"

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def month_of(self, partition_name: str) -> MonthPartition | None:
        found = re.fullmatch(re.escape(self.name) + r"_(\d{4})_(\d{2})", partition_name)
        return MonthPartition(int(found[1]), int(found[2])) if found else None


USAGE_EVENTS = MonthlyTable("usage_events", "occurred_at")
AUDIT_LOG = MonthlyTable("audit_log", "at")
MONTHLY_TABLES = (USAGE_EVENTS, AUDIT_LOG)

_EXISTING = """
SELECT child.relname
FROM pg_inherits
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
WHERE parent.relname = $1
"""


def months_from(first: MonthPartition, count: int) -> list[MonthPartition]:
    months = [first]
    while len(months) < count:
        months.append(months[-1].following())
    return months


async def ensure_partitions(months_ahead: int = 24, *, now: datetime | None = None) -> list[str]:
    """Every monthly table's partitions for this month and the ``months_ahead`` that follow,
    where missing. Returns the names of the partitions created."""
    created = []
    for table in MONTHLY_TABLES:
        created += await ensure_months(table, months_ahead, now=now)
    return created


async def ensure_months(
    table: MonthlyTable, months_ahead: int = 24, *, now: datetime | None = None
) -> list[str]:
    """Create ``table``'s partitions for this month and the ``months_ahead`` that follow.

    Safe from several processes at once (an advisory lock serializes them). Rows that already
    sit in the default partition for a month being created are moved into it.
    Returns the names of the partitions created.
    """
    wanted = months_from(MonthPartition.containing(now or SYSTEM_CLOCK.now()), months_ahead + 1)
    async with current_database().pool.acquire() as connection:
        existing = {row["relname"] for row in await connection.fetch(_EXISTING, table.name)}
        missing = [month for month in wanted if table.partition_name(month) not in existing]
        if not missing:
            return []
        created = []
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            existing = {row["relname"] for row in await connection.fetch(_EXISTING, table.name)}
            for month in missing:
                if table.partition_name(month) not in existing:
                    await _create(connection, table, month)
                    created.append(table.partition_name(month))
    if created:
        log.info("partitions_created", table=table.name, partitions=created)
    return created


async def _create(
    connection: asyncpg.Connection, table: MonthlyTable, month: MonthPartition
) -> None:
    """Build the month as its own table, move any of its rows out of the default partition,
    then attach it (attaching checks the default partition holds none of its range)."""
    # Identifiers cannot be parameters: the names come from the fixed tables above and two
    # integers.
    name = table.partition_name(month)
    bounds = f"FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
    await connection.execute(
        f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    await connection.execute(
        f"WITH moved AS (DELETE FROM {table.default_partition}"
        f" WHERE {table.column} >= $1 AND {table.column} < $2 RETURNING *)"
        f" INSERT INTO {name} SELECT * FROM moved",
        month.start,
        month.end,
    )
    await connection.execute(
        f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES {bounds}"
    )


async def months_before(table: MonthlyTable, cutoff: MonthPartition) -> list[MonthPartition]:
    """The table's monthly partitions that end on or before the start of ``cutoff``."""
    rows = await current_database().pool.fetch(_EXISTING, table.name)
    months = [month for row in rows if (month := table.month_of(row["relname"])) is not None]
    return sorted(month for month in months if month.end <= cutoff.start)


async def drop_month(
    connection: asyncpg.Connection, table: MonthlyTable, month: MonthPartition
) -> int:
    """Detach and drop one month, in the caller's transaction; the rows it held.

    Detaching locks the parent table for a moment: waits are capped by a lock timeout, so a
    long transaction on the table makes this fail (and retention try again later) rather than
    hold up every writer behind it."""
    name = table.partition_name(month)
    await connection.execute("SET LOCAL lock_timeout = '5s'")
    rows = int(await connection.fetchval(f"SELECT count(*) FROM {name}"))
    await connection.execute(f"ALTER TABLE {table.name} DETACH PARTITION {name}")
    await connection.execute(f"DROP TABLE {name}")
    log.info("partition_dropped", table=table.name, partition=name, rows=rows)
    return rows
