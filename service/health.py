"""Liveness (the process answers) and readiness (the database answers)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import Response

from service.db.engine import current as current_database
from service.problems import PROBLEM_MEDIA_TYPE
from service.tenancy.auth import PUBLIC

READY_QUERY_SECONDS = 2.0
"""The longest the readiness query may run once it has a connection."""


class HealthController(Controller):
    tags = ["health"]
    opt = PUBLIC

    @get("/healthz", summary="Is the process up?")
    async def healthz(self) -> dict[str, str]:
        """Answers 200 while the process runs; no key needed (a liveness probe)."""
        return {"status": "ok"}

    @get("/readyz", summary="Can it reach the database?")
    async def readyz(self) -> Response[dict[str, object]]:
        """Answers 200 when the database answers, 503 when it does not; no key needed (a
        readiness probe: send traffic here only while it says 200)."""
        try:
            # Bounded: the pool's acquire timeout, then this; a probe must never hang.
            await current_database().pool.fetchval("SELECT 1", timeout=READY_QUERY_SECONDS)
        except Exception as exc:  # any failure to reach the database means "not ready"
            return Response(
                {
                    "type": "https://kefu-billing.dev/problems/not-ready",
                    "title": "Not ready",
                    "status": 503,
                    "detail": f"database unreachable: {type(exc).__name__}",
                },
                status_code=503,
                media_type=PROBLEM_MEDIA_TYPE,
                headers={"Retry-After": "1"},
            )
        return Response({"status": "ready", "database": "ok"})
