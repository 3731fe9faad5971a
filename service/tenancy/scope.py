"""The one place that scopes merchant-reachable queries.

A ``TenantScope`` is built from the caller's key. For a merchant key every query it builds is
filtered by that merchant; for an operator it sees every merchant, optionally narrowed to one.
Ids from URLs are looked up through ``get``, so another merchant's id is "not found", never 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from piccolo.query import Objects, Select
from piccolo.table import Table

from service.errors import Forbidden, NotFound
from service.tenancy.principal import Principal

T = TypeVar("T", bound=Table)


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

    def select(self, table: type[T], *columns: Any) -> Select:
        query = table.select(*columns)
        if self.merchant_id is not None:
            query = query.where(_merchant_column(table) == self.merchant_id)
        return query

    def objects(self, table: type[T]) -> Objects[T]:
        query = table.objects()
        if self.merchant_id is not None:
            query = query.where(_merchant_column(table) == self.merchant_id)
        return query

    async def get(self, table: type[T], row_id: UUID, *, label: str | None = None) -> T:
        row = await self.objects(table).where(table._meta.primary_key == row_id).first()
        if row is None:
            raise NotFound(f"{label or table._meta.tablename.rstrip('s')} {row_id} not found")
        return row


def _merchant_column(table: type[Table]) -> Any:
    column = getattr(table, "merchant_id", None)
    if column is None:
        if table._meta.tablename == "merchants":
            return table._meta.primary_key
        raise TypeError(f"{table.__name__} is not a tenant table")
    return column
