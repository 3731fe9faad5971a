"""The finance page's login: a short-lived session in an HttpOnly cookie, signed per key.

The cookie holds the operator key's id and an expiry, signed with HMAC-SHA256 keyed by that
key's stored hash. Verifying needs the database (so no secret setting to share between API
processes), and revoking the key ends its sessions at once. The key itself is never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from service.db import engine as db_engine
from service.tenancy import keys
from service.tenancy.principal import KeyScope, Principal, Role

COOKIE_NAME: Final = "kefu_finance_session"
LIFETIME: Final = timedelta(hours=1)


def _sign(key_hash: str, payload: bytes) -> str:
    return hmac.new(key_hash.encode(), payload, hashlib.sha256).hexdigest()


async def _key_row(key_id: UUID) -> dict[str, object] | None:
    row = await db_engine.current().pool.fetchrow(
        "SELECT id, role, merchant_id, scopes, key_hash FROM api_keys"
        " WHERE id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return dict(row) if row is not None else None


def may_read_finance(principal: Principal | None) -> bool:
    return (
        principal is not None
        and principal.is_operator
        and principal.has_scope(KeyScope.FINANCE_READ)
    )


def may_support(principal: Principal | None) -> bool:
    return (
        principal is not None
        and principal.is_operator
        and principal.has_scope(KeyScope.SUPPORT_READ)
    )


def may_log_in(principal: Principal | None) -> bool:
    """Who the session is for: operators with ``finance:read`` (the finance page) or
    ``support:read`` (the support view); each page checks its own scope."""
    return may_read_finance(principal) or may_support(principal)


async def open_session(secret: str, *, now: datetime) -> tuple[Principal, str] | None:
    """Log in with an API key: the principal and the cookie value, if the key may use the
    finance page or the support view (an operator key with ``finance:read`` or
    ``support:read``)."""
    principal = await keys.authenticate(secret)
    if principal is None or not may_log_in(principal):
        return None
    payload = json.dumps(
        {"k": str(principal.key_id), "exp": int((now + LIFETIME).timestamp())},
        separators=(",", ":"),
    ).encode()
    encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return principal, f"{encoded}.{_sign(keys.hash_key(secret), payload)}"


async def principal_of(cookie: str | None, *, now: datetime) -> Principal | None:
    """The operator a session cookie stands for, or ``None`` (absent, forged, expired,
    revoked)."""
    if not cookie or "." not in cookie:
        return None
    encoded, _, signature = cookie.rpartition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        claims = json.loads(payload)
        key_id = UUID(claims["k"])
        expires = int(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= now.timestamp():
        return None
    row = await _key_row(key_id)
    if row is None or not hmac.compare_digest(_sign(str(row["key_hash"]), payload), signature):
        return None
    principal = Principal(
        key_id=key_id,
        role=Role(str(row["role"])),
        merchant_id=row["merchant_id"],  # type: ignore[arg-type]
        scopes=frozenset(row["scopes"]),  # type: ignore[arg-type]
    )
    return principal if may_log_in(principal) else None
