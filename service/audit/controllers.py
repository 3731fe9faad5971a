"""HTTP: the audit log, for operators."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter

from service.audit import log as audit
from service.audit.schemas import AuditEntryOut, AuditPage
from service.problems import responses
from service.tenancy.auth import operator_only
from service.wire import Instant

AuditId = Annotated[
    int | None,
    QueryParameter(name="before_id", ge=1, le=2**63 - 1, description="Entries older than this id"),
]


class AuditController(Controller):
    path = "/v1/audit-log"
    tags = ["audit"]
    guards = [operator_only]

    @get("/", summary="Read the audit log", responses=responses(400, 401, 403))
    async def list_entries(
        self,
        merchant_id: FromQuery[UUID | None] = None,
        since: FromQuery[Instant | None] = None,
        until: FromQuery[Instant | None] = None,
        before_id: AuditId = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 100,
    ) -> AuditPage:
        """Who changed what, newest first; filter by merchant and time (since <= at < until)."""
        rows = await audit.entries(
            merchant_id=merchant_id, since=since, until=until, limit=limit, before_id=before_id
        )
        entries = [AuditEntryOut(**row) for row in rows]
        return AuditPage(
            entries=entries,
            next_before_id=entries[-1].id if len(entries) == limit else None,
        )
