"""API keys: minted at random, shown once, stored as a SHA-256 hash with a visible prefix.

Keys carry 256 bits of randomness, so a fast hash is the right check (a password hash would only
slow every usage request). Verified keys are cached per process for a few seconds; a revoked key
stops working everywhere once that time has passed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from service.audit import log as audit
from service.db.engine import current as current_database
from service.db.tables import ApiKey
from service.errors import Forbidden, InvalidInput, NotFound
from service.tenancy import merchants, sessions
from service.tenancy.principal import (
    MERCHANT_SCOPES,
    OPERATOR_SCOPES,
    Actor,
    Principal,
    Role,
)
from service.tenancy.scope import scoped

_PREFIX_LENGTH = 12


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just minted: ``secret`` is the only time the clear key exists."""

    row: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _mint(role: Role) -> str:
    tag = "kbm" if role is Role.MERCHANT else "kbo"
    return f"{tag}_{secrets.token_urlsafe(32)}"


def _check_scopes(role: Role, scopes: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    allowed = MERCHANT_SCOPES if role is Role.MERCHANT else OPERATOR_SCOPES
    if scopes is None:
        return tuple(sorted(allowed))
    unknown = sorted(set(scopes) - {s.value for s in allowed})
    if unknown:
        raise InvalidInput(
            f"scopes not available to a {role.value} key: {', '.join(unknown)}",
            field="scopes",
        )
    if not scopes:
        raise InvalidInput("a key needs at least one scope", field="scopes")
    return tuple(sorted(set(scopes)))


def issuable_scopes(
    issuer: Principal, role: Role, scopes: list[str] | tuple[str, ...] | None
) -> tuple[str, ...]:
    """The one rule for keys issued through the API: a key may only issue keys whose role and
    scopes are a subset of its own (an operator key may issue merchant keys, a merchant key
    never an operator key). Without ``scopes`` the new key gets every scope of its role that
    the issuer holds. Anything else is `Forbidden`. (The command line, with database access,
    is the root of trust and issues any key: ``billing keys create``.)"""
    if role is Role.OPERATOR and not issuer.is_operator:
        raise Forbidden(
            "a merchant key cannot issue an operator key: ask an operator", field="role"
        )
    allowed = MERCHANT_SCOPES if role is Role.MERCHANT else OPERATOR_SCOPES
    if scopes is None:
        scopes = sorted(str(scope) for scope in allowed if scope in issuer.scopes)
        if not scopes:
            raise Forbidden(
                f"this key holds none of the scopes a {role.value} key can have, so it can "
                "issue none: name the scopes, or use a key that holds them",
                field="scopes",
            )
    checked = _check_scopes(role, scopes)
    missing = sorted(set(checked) - issuer.scopes)
    if missing:
        raise Forbidden(
            "a key can only issue keys with scopes it holds itself; this one lacks "
            f"{', '.join(missing)}: leave them out, or use a key that holds them",
            field="scopes",
            missing_scopes=missing,
        )
    return checked


async def issue_for(
    issuer: Principal,
    *,
    role: Role,
    merchant_id: UUID | None,
    scopes: list[str] | None,
    name: str,
    actor: Actor,
) -> IssuedKey:
    """Issue a key through the API, by the rule of `issuable_scopes`. A refusal is audited
    (in its own transaction: it must outlive the refused request) and answered 403."""
    try:
        checked = issuable_scopes(issuer, role, scopes)
    except Forbidden as refusal:
        async with current_database().engine.transaction():
            await audit.record(
                actor,
                merchant_id=issuer.merchant_id,
                entity="api_key",
                entity_id=str(issuer.key_id),
                action="issue_refused",
                changes={
                    "role": role.value,
                    "scopes": sorted(scopes) if scopes is not None else None,
                    "reason": refusal.detail,
                },
            )
        raise
    async with current_database().engine.transaction():
        return await issue(
            role=role, merchant_id=merchant_id, scopes=checked, name=name, actor=actor
        )


async def issue(
    *,
    role: Role,
    merchant_id: UUID | None,
    scopes: list[str] | tuple[str, ...] | None,
    name: str,
    actor: Actor,
) -> IssuedKey:
    """Create a key. Call inside the caller's transaction; the clear secret is returned once."""
    if (role is Role.MERCHANT) != (merchant_id is not None):
        raise InvalidInput("a merchant key needs a merchant; an operator key has none")
    if merchant_id is not None:
        # No foreign key holds this (api_keys is a reference table on Citus): the merchant
        # must exist, and be a customer, when its key is made. Merchants are never deleted.
        await merchants.get(merchant_id)
    checked = _check_scopes(role, scopes)
    secret = _mint(role)
    row = ApiKey(
        merchant_id=merchant_id,
        role=role.value,
        name=name,
        prefix=secret[:_PREFIX_LENGTH],
        key_hash=hash_key(secret),
        scopes=list(checked),
    )
    await row.save()
    await audit.record(
        actor,
        merchant_id=merchant_id,
        entity="api_key",
        entity_id=row.id,
        action="created",
        changes={"role": role.value, "scopes": list(checked), "prefix": row.prefix, "name": name},
    )
    return IssuedKey(row=row, secret=secret)


async def list_keys(merchant_id: UUID | None, *, operators: bool = False) -> list[ApiKey]:
    query = ApiKey.objects().order_by(ApiKey.created_at)
    if operators:
        query = query.where(ApiKey.merchant_id.is_null())
    elif merchant_id is not None:
        query = query.where(ApiKey.merchant_id == merchant_id)
    return await query


async def revoke(key_id: UUID, *, merchant_id: UUID | None, actor: Actor, now: datetime) -> ApiKey:
    """Revoke a key; ``merchant_id`` limits it to that merchant's keys (None: operator)."""
    row = await scoped(ApiKey.objects().where(ApiKey.id == key_id), ApiKey, merchant_id).first()
    if row is None:
        raise NotFound(f"api key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = now
        await row.save([ApiKey.revoked_at])
        await audit.record(
            actor,
            merchant_id=row.merchant_id,
            entity="api_key",
            entity_id=row.id,
            action="revoked",
            changes={"prefix": row.prefix},
        )
    await sessions.end_for_key(row.id, now=now)
    _cache.forget_key(row.id)
    return row


class KeyCache:
    """Per-process cache of verified keys: hash -> (principal or None, checked_at)."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[Principal | None, float]] = {}

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[1] > self.ttl_seconds:
            return False, None
        return True, entry[0]

    def put(self, key_hash: str, principal: Principal | None) -> None:
        if len(self._entries) > 100_000:  # unknown keys must not grow it without bound
            self._entries.clear()
        self._entries[key_hash] = (principal, time.monotonic())

    def forget_key(self, key_id: UUID) -> None:
        for key_hash, (principal, _) in list(self._entries.items()):
            if principal is not None and principal.key_id == key_id:
                del self._entries[key_hash]

    def clear(self) -> None:
        self._entries.clear()


_cache = KeyCache(ttl_seconds=3.0)


def configure_cache(ttl_seconds: float) -> None:
    _cache.ttl_seconds = ttl_seconds
    _cache.clear()


async def authenticate(secret: str) -> Principal | None:
    """The principal for a presented key, or ``None`` if it is unknown or revoked."""
    key_hash = hash_key(secret)
    is_cached, principal = _cache.get(key_hash)
    if is_cached:
        return principal
    # The hot path: one indexed lookup on the pool, no ORM objects.
    row = await current_database().pool.fetchrow(
        "SELECT id, role, merchant_id, scopes FROM api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        key_hash,
    )
    principal = (
        None
        if row is None
        else Principal(
            key_id=row["id"],
            role=Role(row["role"]),
            merchant_id=row["merchant_id"],
            scopes=frozenset(row["scopes"]),
        )
    )
    _cache.put(key_hash, principal)
    return principal


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        name = str(scope)  # a KeyScope prints as its value, never as an enum repr
        raise Forbidden(
            f"this API key lacks the '{name}' scope: use a key that holds it "
            "(GET /v1/api-keys lists each key's scopes)",
            scope=name,
        )
