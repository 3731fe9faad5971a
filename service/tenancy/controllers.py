"""HTTP: merchants and API keys. Thin: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database
from service.errors import InvalidInput, NotFound
from service.problems import responses
from service.tenancy import keys, merchants
from service.tenancy.auth import operator_only
from service.tenancy.principal import Actor, Principal, Role
from service.tenancy.schemas import (
    ApiKeyCreate,
    ApiKeyIssuedOut,
    ApiKeyOut,
    MerchantCreate,
    MerchantOut,
    MerchantUpdate,
)
from service.tenancy.scope import TenantScope


class MerchantController(Controller):
    path = "/v1/merchants"
    tags = ["merchants"]

    @post(
        "/",
        summary="Create a merchant",
        guards=[operator_only],
        responses=responses(400, 401, 403, 422),
    )
    async def create_merchant(
        self, data: JSONBody[MerchantCreate], actor: NamedDependency[Actor]
    ) -> MerchantOut:
        """Create a merchant (operator). Signup normally goes through ``POST /v1/signup``."""
        async with current_database().engine.transaction():
            row = await merchants.create(
                name=data.name,
                contact_email=data.contact_email,
                timezone=data.timezone,
                currency=data.currency,
                actor=actor,
            )
        return MerchantOut.from_row(row)

    @get("/me", summary="Your merchant", responses=responses(401, 404))
    async def get_me(self, tenant: NamedDependency[TenantScope]) -> MerchantOut:
        """The calling merchant, with whether its invoices can be charged (a way to pay is
        saved: `default_payment_method`) and its payment terms."""
        return await merchants.described(await merchants.get(tenant.require_merchant()))

    @patch("/me", summary="Update your merchant", responses=responses(400, 401, 403, 422))
    async def update_me(
        self,
        data: JSONBody[MerchantUpdate],
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
    ) -> MerchantOut:
        """Edit the calling merchant's name, contact email or timezone."""
        async with current_database().engine.transaction():
            row = await merchants.update(
                tenant.require_merchant(), data.changes(), actor=actor, now=SYSTEM_CLOCK.now()
            )
        return await merchants.described(row)

    @get(
        "/{merchant_id:uuid}",
        summary="One merchant",
        guards=[operator_only],
        responses=responses(401, 403, 404),
    )
    async def get_merchant(self, merchant_id: FromPath[UUID]) -> MerchantOut:
        """Any merchant (operator)."""
        return await merchants.described(await merchants.get(merchant_id))


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]

    @post("/", summary="Create an API key", responses=responses(400, 401, 403, 404, 422))
    async def create_key(
        self,
        data: JSONBody[ApiKeyCreate],
        principal: NamedDependency[Principal],
        actor: NamedDependency[Actor],
    ) -> ApiKeyIssuedOut:
        """Mint a key with a role and scopes within the calling key's own (403 and audited
        otherwise). The answer holds the key itself, shown this once."""
        role, merchant_id = _target_of(data, principal)
        if merchant_id is not None:
            await merchants.get(merchant_id)
        issued = await keys.issue_for(
            principal,
            role=role,
            merchant_id=merchant_id,
            scopes=data.scopes,
            name=data.name,
            actor=actor,
        )
        return ApiKeyIssuedOut(**_fields(ApiKeyOut.from_row(issued.row)), key=issued.secret)

    @get("/", summary="List API keys", responses=responses(401))
    async def list_keys(
        self, tenant: NamedDependency[TenantScope], merchant_id: FromQuery[UUID | None] = None
    ) -> list[ApiKeyOut]:
        """Own keys; operators see operator keys, or one merchant's with ``merchant_id``."""
        target = tenant.narrowed(merchant_id)
        rows = await keys.list_keys(target, operators=target is None)
        return [ApiKeyOut.from_row(row) for row in rows]

    @delete(
        "/{key_id:uuid}",
        summary="Revoke an API key",
        status_code=200,
        responses=responses(401, 404),
    )
    async def revoke_key(
        self,
        key_id: FromPath[UUID],
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
    ) -> ApiKeyOut:
        """Revoke a key: it stops working on every process within a few seconds."""
        async with current_database().engine.transaction():
            row = await keys.revoke(
                key_id, merchant_id=tenant.merchant_id, actor=actor, now=SYSTEM_CLOCK.now()
            )
        return ApiKeyOut.from_row(row)


def _target_of(data: ApiKeyCreate, principal: Principal) -> tuple[Role, UUID | None]:
    if not principal.is_operator:
        if data.merchant_id not in (None, principal.merchant_id):
            raise NotFound("a merchant key can only mint keys for its own merchant")
        # An operator role asked by a merchant key is refused (and audited) by the issuing rule.
        return Role(data.role or Role.MERCHANT.value), principal.merchant_id
    if data.role == Role.MERCHANT.value or (data.role is None and data.merchant_id is not None):
        if data.merchant_id is None:
            raise InvalidInput("a merchant key needs merchant_id", field="merchant_id")
        return Role.MERCHANT, data.merchant_id
    if data.merchant_id is not None:
        raise InvalidInput("an operator key has no merchant_id", field="merchant_id")
    return Role.OPERATOR, None


def _fields(out: ApiKeyOut) -> dict[str, object]:
    return {name: getattr(out, name) for name in out.__struct_fields__}
