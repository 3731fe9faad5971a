"""``GET /metrics``: Prometheus' text format, with the stored figures read first (see
``service.observability.stored``)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service.observability.stored import STORED_FACTS
from service.settings import Settings
from service.tenancy.auth import PUBLIC


class MetricsController(Controller):
    path = "/metrics"
    opt = PUBLIC
    include_in_schema = False

    @get("/")
    async def metrics(self, settings: NamedDependency[Settings]) -> Response[bytes]:
        await STORED_FACTS.refresh(max_age_seconds=settings.metrics_cache_seconds)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
