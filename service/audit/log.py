"""Recording and reading audit entries. Callers record inside their own transaction.

An entry that concerns no merchant (an operator key made, a plan published) is stored under the
platform tenant (``merchant_id`` is the shard key on Citus, never NULL) and read back with no
merchant, as before."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from service.db.tables import AuditEntry
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.tenancy.principal import Actor


async def record(
    actor: Actor,
    *,
    merchant_id: UUID | None,
    entity: str,
    entity_id: UUID | str,
    action: str,
    changes: dict[str, Any] | None = None,
) -> None:
    await AuditEntry.insert(
        AuditEntry(
            merchant_id=merchant_id if merchant_id is not None else PLATFORM_MERCHANT_ID,
            actor_key_id=actor.key_id,
            actor_role=actor.role,
            entity=entity,
            entity_id=str(entity_id),
            action=action,
            changes=changes or {},
            request_id=actor.request_id,
        )
    )


async def entries(
    *,
    merchant_id: UUID | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
    query = AuditEntry.select().order_by(AuditEntry.id, ascending=False).limit(limit)
    if merchant_id is not None:
        query = query.where(AuditEntry.merchant_id == merchant_id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = await query.output(load_json=True)
    for row in rows:
        if row["merchant_id"] == PLATFORM_MERCHANT_ID:
            row["merchant_id"] = None
    return rows
