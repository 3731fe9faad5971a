"""HTTP: webhook endpoints (operators for any merchant or all; merchants for their own) and the
log of what was sent to them (operators). Thin: parse, authorize, call the domain, answer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database
from service.errors import NotFound
from service.outgoing import endpoints, eventlog
from service.outgoing.schemas import EndpointCreate, EndpointCreatedOut, EndpointOut, EventOut
from service.problems import responses
from service.settings import Settings
from service.tenancy.auth import operator_only
from service.tenancy.principal import Actor, Principal
from service.tenancy.scope import TenantScope

EventTypeFilter = Annotated[
    str | None, QueryParameter(name="type", pattern=r"^[a-z_]{1,30}\.[a-z_]{1,30}$")
]


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]

    @post(
        "/",
        summary="Register a webhook endpoint",
        responses=responses(400, 401, 403, 404, 422),
    )
    async def create_endpoint(
        self,
        data: JSONBody[EndpointCreate],
        principal: NamedDependency[Principal],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> EndpointCreatedOut:
        """Register a URL to be told about billing events (`events`: types, or `["*"]`).
        Operators register for every merchant, or one (`merchant_id`); a merchant's key for its
        own events only. The answer holds the signing secret, shown this once."""
        if principal.is_operator:
            owner, for_merchant = None, data.merchant_id
        else:
            if data.merchant_id not in (None, principal.merchant_id):
                raise NotFound("a merchant key registers endpoints for its own merchant only")
            owner, for_merchant = principal.merchant_id, None
        async with current_database().engine.transaction():
            row, secret = await endpoints.register(
                owner_merchant_id=owner,
                for_merchant_id=for_merchant,
                url=data.url,
                events=data.events,
                description=data.description,
                settings=settings.outgoing,
                actor=actor,
                now=SYSTEM_CLOCK.now(),
            )
        out = EndpointOut.from_row(row)
        return EndpointCreatedOut(
            **{name: getattr(out, name) for name in out.__struct_fields__}, secret=secret
        )

    @get("/", summary="List webhook endpoints", responses=responses(400, 401))
    async def list_endpoints(
        self, tenant: NamedDependency[TenantScope], merchant_id: FromQuery[UUID | None] = None
    ) -> list[EndpointOut]:
        """A merchant's own endpoints; operators see every endpoint, or with `merchant_id` the
        ones that hear that merchant (its own and operators' for it or for everyone)."""
        if tenant.merchant_id is not None:
            rows = await endpoints.listed(merchant_id=tenant.merchant_id)
        else:
            rows = await endpoints.listed(merchant_id=None, hearing=merchant_id)
        return [EndpointOut.from_row(row) for row in rows]

    @get("/{endpoint_id:uuid}", summary="One webhook endpoint", responses=responses(401, 404))
    async def get_endpoint(
        self, tenant: NamedDependency[TenantScope], endpoint_id: FromPath[UUID]
    ) -> EndpointOut:
        """One endpoint, with whether it is enabled and its consecutive failures (never its
        secret)."""
        return EndpointOut.from_row(
            await endpoints.get(endpoint_id, merchant_id=tenant.merchant_id)
        )

    @delete(
        "/{endpoint_id:uuid}",
        summary="Delete a webhook endpoint",
        status_code=200,
        responses=responses(401, 404),
    )
    async def delete_endpoint(
        self,
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
        endpoint_id: FromPath[UUID],
    ) -> EndpointOut:
        """Stop sending to an endpoint: deliveries still waiting for it are canceled."""
        async with current_database().engine.transaction():
            row = await endpoints.delete(
                endpoint_id, merchant_id=tenant.merchant_id, actor=actor, now=SYSTEM_CLOCK.now()
            )
        return EndpointOut.from_row(row)

    @post(
        "/{endpoint_id:uuid}/enable",
        summary="Enable a disabled webhook endpoint",
        status_code=200,
        guards=[operator_only],
        responses=responses(401, 403, 404),
    )
    async def enable_endpoint(
        self, actor: NamedDependency[Actor], endpoint_id: FromPath[UUID]
    ) -> EndpointOut:
        """Operators: an endpoint disabled after consecutive failed deliveries is enabled
        again; what waited for it is sent at once, in order."""
        async with current_database().engine.transaction():
            row = await endpoints.enable(endpoint_id, actor=actor, now=SYSTEM_CLOCK.now())
        return EndpointOut.from_row(row)


class WebhookEventController(Controller):
    path = "/v1/webhook-events"
    tags = ["webhooks"]
    guards = [operator_only]

    @get("/", summary="List sent events", responses=responses(400, 401, 403))
    async def list_events(
        self,
        merchant_id: FromQuery[UUID | None] = None,
        event_type: EventTypeFilter = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> list[EventOut]:
        """Operators: recent events, newest first, each with its deliveries and their status
        (filter by `merchant_id` and `type`)."""
        return await eventlog.events(merchant_id=merchant_id, event_type=event_type, limit=limit)

    @get(
        "/{event_id:uuid}",
        summary="One event and its delivery log",
        responses=responses(401, 403, 404),
    )
    async def get_event(self, event_id: FromPath[UUID]) -> EventOut:
        """Operators: the event as sent, and every attempt of every delivery of it (outcome,
        answer code, latency, a short excerpt of the answer)."""
        return await eventlog.event(event_id)
