"""Webhook endpoints: registered, listed, deleted, enabled again after being disabled.

An operator's endpoint lives under the platform tenant and hears every merchant's events, or
one named merchant's; a merchant's endpoint lives under that merchant and hears its own. Each
gets a signing secret, returned once by `register` and never again (it is stored to sign,
and kept out of every answer, log line and audit entry). Statements that change a row name its
``merchant_id`` (Citus routes them to one shard).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from service.audit import log as audit
from service.db.engine import transaction_connection
from service.db.tables import WebhookEndpoint
from service.errors import InvalidInput, NotFound
from service.outgoing import signing
from service.outgoing.addresses import check_url
from service.outgoing.types import ALL_TYPES, known
from service.settings import OutgoingWebhookSettings
from service.tenancy import merchants
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.tenancy.principal import Actor

_COLUMNS = (
    "merchant_id, id, for_merchant_id, url, description, event_types, signing_secret,"
    " consecutive_failures, disabled_at, disabled_reason, created_at, deleted_at"
)

_INSERT = f"""
INSERT INTO webhook_endpoints (merchant_id, for_merchant_id, url, description, event_types,
    signing_secret, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING {_COLUMNS}
"""

_DELETE = f"""
UPDATE webhook_endpoints SET deleted_at = $3
WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING {_COLUMNS}
"""

# Its deliveries still waiting go nowhere now. (They belong to many merchants: on Citus this one
# statement reaches every shard; deleting an endpoint is rare.)
_CANCEL_DELIVERIES = """
UPDATE outgoing_deliveries SET status = 'canceled', lease_until = NULL
WHERE endpoint_merchant_id = $1 AND endpoint_id = $2 AND status IN ('pending', 'in_flight')
"""

_ENABLE = f"""
UPDATE webhook_endpoints
SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0
WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING {_COLUMNS}
"""

# What waited while it was disabled goes now, in order, with a fresh retry window.
_RESTART_DELIVERIES = """
UPDATE outgoing_deliveries SET next_attempt_at = $3, retrying_since = $3
WHERE endpoint_merchant_id = $1 AND endpoint_id = $2 AND status = 'pending'
"""


def _endpoint(row: object) -> WebhookEndpoint:
    found = WebhookEndpoint(**dict(row))  # type: ignore[call-overload]
    found.signing_secret = signing.SigningSecret(found.signing_secret)
    return found


async def register(
    *,
    owner_merchant_id: UUID | None,
    for_merchant_id: UUID | None,
    url: str,
    events: Sequence[str],
    description: str,
    settings: OutgoingWebhookSettings,
    actor: Actor,
    now: datetime,
) -> tuple[WebhookEndpoint, signing.SigningSecret]:
    """A new endpoint, in the caller's transaction: an operator's (``owner_merchant_id`` None:
    every merchant's events, or ``for_merchant_id``'s) or a merchant's own. With its secret."""
    unknown = sorted({name for name in events if not known(name)})
    if unknown:
        raise InvalidInput(
            f"unknown event types: {', '.join(unknown)}; see the catalog in the README, or use"
            f" {ALL_TYPES!r} for every type",
            field="events",
        )
    check_url(
        url,
        requires_https=settings.requires_https,
        allows_private=settings.allows_private_addresses,
    )
    if for_merchant_id is not None:
        await merchants.get(for_merchant_id)  # a merchant that exists (never the platform)
    owner = owner_merchant_id if owner_merchant_id is not None else PLATFORM_MERCHANT_ID
    secret = signing.new_secret()
    types = sorted(set(events)) if ALL_TYPES not in events else [ALL_TYPES]
    row = await transaction_connection().fetchrow(
        _INSERT, owner, for_merchant_id, url, description, types, str(secret), now
    )
    endpoint = _endpoint(row)
    await audit.record(
        actor,
        merchant_id=owner_merchant_id or for_merchant_id,
        entity="webhook_endpoint",
        entity_id=endpoint.id,
        action="created",
        changes={"url": url, "events": types, "for_merchant_id": _text(for_merchant_id)},
    )
    return endpoint, secret


async def get(endpoint_id: UUID, *, merchant_id: UUID | None) -> WebhookEndpoint:
    """A live endpoint; ``merchant_id`` (a merchant's key) limits it to that merchant's own."""
    query = (
        WebhookEndpoint.select()
        .where(WebhookEndpoint.id == endpoint_id)
        .where(WebhookEndpoint.deleted_at.is_null())
    )
    if merchant_id is not None:
        query = query.where(WebhookEndpoint.merchant_id == merchant_id)
    row = await query.first()
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return _endpoint(row)


async def listed(*, merchant_id: UUID | None, hearing: UUID | None = None) -> list[WebhookEndpoint]:
    """Live endpoints: a merchant's own (``merchant_id``), or for an operator every one, or the
    ones that hear merchant ``hearing`` (its own and the platform's for it or for everyone)."""
    query = (
        WebhookEndpoint.select()
        .where(WebhookEndpoint.deleted_at.is_null())
        .order_by(WebhookEndpoint.created_at)
    )
    if merchant_id is not None:
        query = query.where(WebhookEndpoint.merchant_id == merchant_id)
    elif hearing is not None:
        query = query.where(
            (WebhookEndpoint.merchant_id == hearing)
            | (
                (WebhookEndpoint.merchant_id == PLATFORM_MERCHANT_ID)
                & (
                    WebhookEndpoint.for_merchant_id.is_null()
                    | (WebhookEndpoint.for_merchant_id == hearing)
                )
            )
        )
    return [_endpoint(row) for row in await query.limit(500)]


async def delete(
    endpoint_id: UUID, *, merchant_id: UUID | None, actor: Actor, now: datetime
) -> WebhookEndpoint:
    """Delete an endpoint (in the caller's transaction); what still waited for it is canceled."""
    found = await get(endpoint_id, merchant_id=merchant_id)
    connection = transaction_connection()
    row = await connection.fetchrow(_DELETE, found.merchant_id, found.id, now)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    await connection.execute(_CANCEL_DELIVERIES, found.merchant_id, found.id)
    await audit.record(
        actor,
        merchant_id=_merchant_of(found),
        entity="webhook_endpoint",
        entity_id=found.id,
        action="deleted",
        changes={"url": found.url},
    )
    return _endpoint(row)


async def enable(endpoint_id: UUID, *, actor: Actor, now: datetime) -> WebhookEndpoint:
    """Operators: an endpoint disabled after failing is enabled again (its failure count back
    to 0); the deliveries that waited go at once, in order, each with a new retry window."""
    found = await get(endpoint_id, merchant_id=None)
    connection = transaction_connection()
    row = await connection.fetchrow(_ENABLE, found.merchant_id, found.id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    await connection.execute(_RESTART_DELIVERIES, found.merchant_id, found.id, now)
    await audit.record(
        actor,
        merchant_id=_merchant_of(found),
        entity="webhook_endpoint",
        entity_id=found.id,
        action="enabled",
        changes={"was_disabled_at": _text(found.disabled_at)},
    )
    return _endpoint(row)


def _merchant_of(endpoint: WebhookEndpoint) -> UUID | None:
    """The merchant an endpoint's audit entries belong to (None: the platform's own)."""
    if endpoint.merchant_id == PLATFORM_MERCHANT_ID:
        return endpoint.for_merchant_id
    return endpoint.merchant_id


def _text(value: object) -> str | None:
    return None if value is None else str(value)
