"""Response bodies for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from service.wire import Output


class AuditEntryOut(Output):
    id: int
    merchant_id: UUID | None
    """The merchant the change concerns; null for operator actions that concern none."""
    actor_key_id: UUID | None
    actor_role: str
    entity: str
    entity_id: str
    action: str
    changes: dict[str, Any]
    request_id: str
    at: datetime


class AuditPage(Output):
    entries: list[AuditEntryOut]
    next_before_id: int | None
    """Pass as ``before_id`` to read the next (older) page; null on the last page."""
