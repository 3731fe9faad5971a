"""Every SQL statement the suite's own pool sends, and the check that row locks name their shard.

On Citus a statement that locks rows (``FOR UPDATE``, ``FOR SHARE``, ``SKIP LOCKED``) in a
distributed table without naming the merchant is refused ("could not run distributed query with
FOR UPDATE/SHARE commands"); on plain PostgreSQL it works, and nothing would notice. The suite's
pool records every statement (`RecordingConnection`, an asyncpg connection class), and each
integration test fails at teardown if one of the statements it caused locks rows of a
distributed table (``service.db.distribution.PLACEMENTS``) without ``merchant_id = ...`` (for
``merchants``, its ``id``). The Citus suite checks the same thing by running.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import asyncpg

from service.db.distribution import PLACEMENTS, Placement, distribution_column

SEEN: list[str] = []
"""Statements sent on the suite's pool, oldest first (tests read the slice they caused)."""


class RecordingConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that notes every statement before sending it."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().execute(query, *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        SEEN.append(command)
        return await super().executemany(command, args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().fetchval(query, *args, **kwargs)

    async def fetchmany(self, query: str, args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().fetchmany(query, args, **kwargs)

    async def prepare(self, query: str, **kwargs: Any) -> Any:
        SEEN.append(query)
        return await super().prepare(query, **kwargs)

    def cursor(self, query: str, *args: Any, **kwargs: Any) -> Any:
        SEEN.append(query)
        return super().cursor(query, *args, **kwargs)


_LOCKS = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.IGNORECASE)
_COLUMN_LIST = re.compile(r"(SELECT(?: ALL)?) .*? FROM", re.IGNORECASE)
_TABLES = re.compile(r"\b(?:FROM|JOIN)\s+\"?([a-z_][a-z0-9_]*)\"?", re.IGNORECASE)


def _names(statement: str, column: str) -> bool:
    """Whether the statement compares ``column`` (bare, aliased or quoted) with something."""
    return re.search(rf"\b{column}\"?\s*=(?!\s*ANY\b)", statement, re.IGNORECASE) is not None


def shardless_locks(statements: Iterable[str]) -> list[str]:
    """The statements that lock rows of a distributed table without naming its shard key."""
    found = []
    for statement in statements:
        if not _LOCKS.search(statement):
            continue
        tables = {name.lower() for name in _TABLES.findall(statement)}
        distributed = [table for table in tables if PLACEMENTS.get(table) is Placement.DISTRIBUTED]
        if any(not _names(statement, distribution_column(table)) for table in distributed):
            found.append(_COLUMN_LIST.sub(r"\1 … FROM", " ".join(statement.split())))
    return sorted(set(found))
