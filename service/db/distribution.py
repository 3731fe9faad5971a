"""Where every table lives on Citus, and distributing them (``billing migrate``).

On plain PostgreSQL this changes nothing. On a Citus coordinator (the ``citus`` extension in
the database) ``billing migrate`` runs `distribute` after the migrations: tenant tables are
distributed by ``merchant_id`` (``merchants`` by ``id``), all in one colocation group, so a
merchant's rows of every table sit on one shard and a statement that names the merchant runs on
that shard alone; small tables every node reads (the catalog, API keys, invoice-number
prefixes, test clocks, the owners of Stripe objects) are reference tables, copied to every
node; a few tables stay on the coordinator (the Stripe inbox and idempotency records, whose rows
exist before their merchant is known, and bookkeeping of the service itself). `PLACEMENTS`
names every table: a table it does not name stops ``billing migrate`` on Citus, and a test
stops it on plain PostgreSQL first. ``infra/README.md`` lists the same placements with why.

Distributing is idempotent (tables already placed are left as they are) and copies the rows a
table already holds, so a database that ran on one PostgreSQL moves onto a cluster by
installing Citus on it, adding workers and running ``billing migrate`` again.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg
import structlog

log = structlog.get_logger(__name__)


class Placement(StrEnum):
    DISTRIBUTED = "distributed"
    """Sharded by merchant, colocated with ``merchants``."""
    REFERENCE = "reference"
    """Copied to every node: small, read with tenant rows, written rarely."""
    LOCAL = "local"
    """A plain table on the coordinator."""


_DISTRIBUTED = Placement.DISTRIBUTED
_REFERENCE = Placement.REFERENCE
_LOCAL = Placement.LOCAL

PLACEMENTS: dict[str, Placement] = {
    "merchants": _DISTRIBUTED,
    "audit_log": _DISTRIBUTED,
    "subscriptions": _DISTRIBUTED,
    "subscription_periods": _DISTRIBUTED,
    "subscription_events": _DISTRIBUTED,
    "contracts": _DISTRIBUTED,
    "pending_invoice_lines": _DISTRIBUTED,
    "usage_aggregates": _DISTRIBUTED,
    "usage_transactions": _DISTRIBUTED,
    "usage_events": _DISTRIBUTED,
    "usage_billed": _DISTRIBUTED,
    "invoices": _DISTRIBUTED,
    "invoice_lines": _DISTRIBUTED,
    "invoice_number_sequences": _DISTRIBUTED,
    "credit_notes": _DISTRIBUTED,
    "sla_reports": _DISTRIBUTED,
    "credit_balances": _DISTRIBUTED,
    "credit_balance_movements": _DISTRIBUTED,
    "payments": _DISTRIBUTED,
    "refunds": _DISTRIBUTED,
    "disputes": _DISTRIBUTED,
    "payment_methods": _DISTRIBUTED,
    "payment_setup_links": _DISTRIBUTED,
    "stripe_outbox": _DISTRIBUTED,
    "webhook_endpoints": _DISTRIBUTED,
    "outgoing_events": _DISTRIBUTED,
    "outgoing_deliveries": _DISTRIBUTED,
    "outgoing_attempts": _DISTRIBUTED,
    "outgoing_event_marks": _DISTRIBUTED,
    "finance_sessions": _DISTRIBUTED,
    "api_keys": _REFERENCE,
    "plan_versions": _REFERENCE,
    "stripe_catalog_map": _REFERENCE,
    "test_clocks": _REFERENCE,
    "invoice_number_prefixes": _REFERENCE,
    "stripe_owners": _REFERENCE,
    "stripe_inbox": _LOCAL,
    "idempotency_records": _LOCAL,
    "finance_reconciliations": _LOCAL,
    "retention_totals": _LOCAL,
    "migration": _LOCAL,
}

DISTRIBUTED_FUNCTIONS: dict[str, str] = {
    "usage_store": "p_merchant_id",
}
"""Functions that work on one merchant's rows, by the argument naming the merchant: Citus runs a
call of one on the node that holds that merchant's shard (``service.usage.ingest``)."""

DISTRIBUTION_COLUMN = "merchant_id"
COLOCATION_ANCHOR = "merchants"
"""The first table distributed; every other distributed table is colocated with it."""


def distribution_column(table: str) -> str:
    return "id" if table == COLOCATION_ANCHOR else DISTRIBUTION_COLUMN


class UnplacedTable(RuntimeError):
    """A table `PLACEMENTS` does not name: where it belongs on Citus has not been decided."""


_TABLES = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""

_PLACED = """
SELECT logicalrelid::regclass::text AS relname, partmethod FROM pg_dist_partition
"""

# Which tables each table's foreign keys point at (a table is distributed after those).
_REFERENCED = """
SELECT conrelid::regclass::text AS relname, confrelid::regclass::text AS referenced,
       conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'f' AND connamespace = 'public'::regnamespace AND conrelid <> confrelid
"""


async def has_citus(connection: asyncpg.Connection) -> bool:
    return bool(
        await connection.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citus'")
    )


async def unplaced_tables(connection: asyncpg.Connection) -> list[str]:
    """Tables of the schema `PLACEMENTS` does not name."""
    return [
        row["relname"]
        for row in await connection.fetch(_TABLES)
        if row["relname"] not in PLACEMENTS
    ]


async def distribute(connection: asyncpg.Connection, *, shard_count: int) -> list[str]:
    """On a Citus coordinator, place every table not yet placed, in one transaction; a no-op
    elsewhere. Returns what it placed."""
    if not await has_citus(connection):
        return []
    async with connection.transaction():
        return await _distribute(connection, shard_count=shard_count)


async def _distribute(connection: asyncpg.Connection, *, shard_count: int) -> list[str]:
    unplaced = await unplaced_tables(connection)
    if unplaced:
        raise UnplacedTable(
            f"table(s) {', '.join(unplaced)} have no Citus placement: add them to"
            " service.db.distribution.PLACEMENTS (and infra/README.md)"
        )
    present = {row["relname"] for row in await connection.fetch(_TABLES)}
    placed = {row["relname"] for row in await connection.fetch(_PLACED)}
    depends: dict[str, set[str]] = {}
    # Making a reference table of one that a plain table's foreign key points at turns the plain
    # table, and every table linked to it by foreign keys, into coordinator-local tables (Citus
    # does it silently). Such keys (merchants -> test_clocks) are dropped while the tables are
    # placed and put back once the tables at both ends are: a distributed table may point at a
    # reference table.
    put_back = []
    for row in await connection.fetch(_REFERENCED):
        depends.setdefault(row["relname"], set()).add(row["referenced"])
        if (
            row["relname"] not in placed
            and row["referenced"] not in placed
            and PLACEMENTS.get(row["referenced"]) is Placement.REFERENCE
        ):
            put_back.append(row)
            await connection.execute(
                f"ALTER TABLE {row['relname']} DROP CONSTRAINT {row['conname']}"
            )
    # The row guards on invoices and their lines read only the row they fire on (see the
    # migration that made them so): safe on shards, which Citus wants said explicitly.
    await connection.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    # One transaction that creates shards of tables linked by foreign keys and then writes to
    # them: Citus needs it to use one connection per node throughout.
    await connection.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    done: list[str] = []
    for table in sorted(present - placed):
        if PLACEMENTS[table] is Placement.REFERENCE:
            await connection.execute("SELECT create_reference_table($1)", table)
            done.append(table)
    waiting = sorted(
        table for table in present - placed if PLACEMENTS[table] is Placement.DISTRIBUTED
    )
    placed |= set(done)
    while waiting:
        ready = [table for table in waiting if depends.get(table, set()) <= placed | {table}]
        if COLOCATION_ANCHOR in waiting:
            ready = [COLOCATION_ANCHOR]
        if not ready:
            raise RuntimeError(
                f"cannot order the distribution of {', '.join(waiting)}: their foreign keys"
                " point at tables that are neither distributed nor reference tables"
            )
        for table in ready:
            if table == COLOCATION_ANCHOR:
                await connection.execute(
                    "SELECT create_distributed_table($1, $2, shard_count => $3)",
                    table,
                    distribution_column(table),
                    shard_count,
                )
            else:
                await connection.execute(
                    "SELECT create_distributed_table($1, $2, colocate_with => $3)",
                    table,
                    distribution_column(table),
                    COLOCATION_ANCHOR,
                )
            done.append(table)
            placed.add(table)
            waiting.remove(table)
    for row in put_back:
        await connection.execute(
            f"ALTER TABLE {row['relname']} ADD CONSTRAINT {row['conname']} {row['definition']}"
        )
    functions = [
        function
        for function, argument in DISTRIBUTED_FUNCTIONS.items()
        if await _distribute_function(connection, function, argument)
    ]
    # The rows copied onto the shards stay behind in the coordinator's own table until removed.
    for table in done:
        await connection.execute("SELECT truncate_local_data_after_distributing_table($1)", table)
    if done or functions:
        log.info("citus_tables_placed", tables=done, functions=functions, shard_count=shard_count)
    return done + [f"{function}()" for function in functions]


_FUNCTION = """
SELECT p.oid::regprocedure::text AS signature,
       EXISTS (SELECT 1 FROM pg_dist_object o
               WHERE o.classid = 'pg_proc'::regclass AND o.objid = p.oid
                 AND o.distribution_argument_index IS NOT NULL) AS is_distributed
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname = $1
"""


async def _distribute_function(connection: asyncpg.Connection, name: str, argument: str) -> bool:
    """Make ``name`` a distributed function colocated with the merchants, by ``argument``."""
    found = await connection.fetch(_FUNCTION, name)
    if len(found) != 1:
        raise RuntimeError(f"expected one function {name}(), found {len(found)}")
    if found[0]["is_distributed"]:
        return False
    await connection.execute(
        "SELECT create_distributed_function($1::regprocedure, $2, colocate_with => $3)",
        found[0]["signature"],
        argument,
        COLOCATION_ANCHOR,
    )
    return True
