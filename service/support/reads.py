"""Whose data a merchant read shows: a merchant key's own merchant; for support staff (an
operator key with ``support:read``) the merchant named by ``?merchant_id=``, recorded in the
audit log as a ``support_read`` of that merchant."""

from __future__ import annotations

from uuid import UUID

from service.audit import log as audit
from service.db.engine import current as current_database
from service.db.tables import Merchant
from service.errors import Forbidden, InvalidInput, NotFound
from service.tenancy.auth import requires
from service.tenancy.platform import is_platform
from service.tenancy.principal import Actor, KeyScope, Principal

SUPPORT_READABLE = requires(KeyScope.BILLING_READ, or_for_operators=KeyScope.SUPPORT_READ)
"""Route ``opt`` of the merchant reads support staff may make: a merchant key needs
``billing:read``; an operator key ``billing:read`` or ``support:read``."""


async def merchant_to_read(
    principal: Principal, merchant_id: UUID | None, *, actor: Actor, reading: str
) -> UUID:
    """The merchant whose ``reading`` (``upcoming_invoice``, ``usage_summary``, ...) to show.

    A merchant key reads its own merchant (naming another is "not found", as everywhere). An
    operator key needs ``support:read`` and names the merchant; the read is audited."""
    if not principal.is_operator:
        own = principal.merchant_id
        if own is None or (merchant_id is not None and merchant_id != own):
            # Another merchant's id is "not found", and not repeated back.
            raise NotFound("no such merchant for this key: leave merchant_id out")
        return own
    if not principal.has_scope(KeyScope.SUPPORT_READ):
        raise Forbidden(
            f"an operator reads a merchant's {reading.replace('_', ' ')} with the support:read"
            " scope (billing keys create --role operator --scope support:read)",
            scope=KeyScope.SUPPORT_READ.value,
        )
    if merchant_id is None:
        raise InvalidInput(
            "name the merchant to read: ?merchant_id=<the merchant's id>", field="merchant_id"
        )
    await record_look(actor, merchant_id, reading=reading)
    return merchant_id


async def record_look(actor: Actor, merchant_id: UUID, *, reading: str) -> None:
    """Audit that support looked at ``merchant_id`` (``NotFound`` if there is no such
    merchant)."""
    exists = await Merchant.exists().where(Merchant.id == merchant_id)
    if not exists or is_platform(merchant_id):
        raise NotFound(f"merchant {merchant_id} not found")
    async with current_database().engine.transaction():
        await audit.record(
            actor,
            merchant_id=merchant_id,
            entity="merchant",
            entity_id=merchant_id,
            action="support_read",
            changes={"read": reading},
        )
