"""The one place that scopes merchant-reachable queries.

A ``TenantScope`` is built from the caller's key: its ``merchant_id`` is the merchant a key is
limited to (``None`` for an operator, who may narrow to one). Domain lookups take that id and
filter through ``scoped``, so another merchant's id is "not found", never 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from piccolo.query import Objects, Select
from piccolo.table import Table

from service.errors import Forbidden
from service.tenancy.principal import Principal

Q = TypeVar("Q", Objects[Any], Select)


@dataclass(frozen=True, slots=True)
class TenantScope:
    principal: Principal

    @property
    def merchant_id(self) -> UUID | None:
        """The merchant every query is limited to; ``None`` for an operator (all merchants)."""
        return self.principal.merchant_id if not self.principal.is_operator else None

    def require_merchant(self) -> UUID:
        """The caller's own merchant; operators must name one where a merchant is implied."""
        merchant_id = self.principal.merchant_id
        if merchant_id is None:
            raise Forbidden("this endpoint acts for a merchant: call it with the merchant's key")
        return merchant_id

    def narrowed(self, merchant_id: UUID | None) -> UUID | None:
        """The merchant filter to apply when an operator may ask for one merchant."""
        return self.merchant_id if self.merchant_id is not None else merchant_id


def scoped(query: Q, table: type[Table], merchant_id: UUID | None) -> Q:
    """``query`` limited to one merchant's rows; ``None`` (an operator) leaves it whole.

    Every lookup a merchant's key can reach goes through here, so the filter cannot be
    forgotten in one place and remembered in another."""
    if merchant_id is None:
        return query
    return query.where(_merchant_column(table) == merchant_id)  # type: ignore[no-any-return]


async def owner_of(table: type[Table], row_id: UUID) -> UUID | None:
    """The merchant a row of ``table`` belongs to (None: no such row), read without a lock.

    An operator names a row by its id alone; a statement that locks it must name its merchant
    too (on Citus a lock is taken on one shard, never across all): look the merchant up first,
    then lock by merchant and id."""
    row = (
        await table.select(_merchant_column(table))
        .where(table._meta.get_column_by_name("id") == row_id)
        .first()
    )
    return None if row is None else row["merchant_id"]


def _merchant_column(table: type[Table]) -> Any:
    column = getattr(table, "merchant_id", None)
    if column is None:
        if table._meta.tablename == "merchants":
            return table._meta.primary_key
        raise TypeError(f"{table.__name__} is not a tenant table")
    return column
