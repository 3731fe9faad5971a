"""Browser sessions opened with an API key (the finance page), kept server-side.

The cookie holds a random token; the ``finance_sessions`` row holds its SHA-256, the key it was
opened with and when it ends. A session is good while its row is neither expired nor ended and
its key is not revoked: logging out ends the row, and revoking the key ends every row of that
key (``service.tenancy.keys.revoke``), so an old cookie is worthless at once, on every process.
Sessions belong to no merchant: they live under the platform tenant, and every statement names
its ``merchant_id`` (the table's shard key).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from service.db import engine as db_engine
from service.db.tables import FinanceSession
from service.tenancy.platform import PLATFORM_MERCHANT_ID
from service.tenancy.principal import Principal, Role

_MAX_TOKEN_LENGTH: Final = 100
COOKIE_NAME: Final = "kefu_finance_session"
"""The session cookie: path ``/``, so a browser also sends it for invoice documents under
``/v1/invoices`` (the only API routes that read it, `service.tenancy.auth`)."""

_OPEN = """
INSERT INTO finance_sessions (merchant_id, key_id, token_hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)
"""

# Sessions that ended or expired more than a day ago are of no use to anyone: each login
# sweeps them (a few rows; logins are rare).
_SWEEP = """
DELETE FROM finance_sessions
WHERE merchant_id = $1 AND coalesce(ended_at, expires_at) < $2
"""

_FIND = """
SELECT k.id, k.role, k.merchant_id, k.scopes
FROM finance_sessions s JOIN api_keys k ON k.id = s.key_id
WHERE s.merchant_id = $1 AND s.token_hash = $2 AND s.ended_at IS NULL AND s.expires_at > $3
  AND k.revoked_at IS NULL
"""

_END = """
UPDATE finance_sessions SET ended_at = $3
WHERE merchant_id = $1 AND token_hash = $2 AND ended_at IS NULL
"""

_END_FOR_KEY = """
UPDATE finance_sessions SET ended_at = {}
WHERE merchant_id = {} AND key_id = {} AND ended_at IS NULL
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _usable(token: str | None) -> bool:
    return bool(token) and len(token or "") <= _MAX_TOKEN_LENGTH and (token or "").isascii()


async def open_session(principal: Principal, *, now: datetime, lifetime: timedelta) -> str:
    """A new session for ``principal``'s key; returns the cookie's token (shown this once)."""
    token = secrets.token_urlsafe(32)
    pool = db_engine.current().pool
    await pool.execute(_SWEEP, PLATFORM_MERCHANT_ID, now - timedelta(days=1))
    await pool.execute(
        _OPEN, PLATFORM_MERCHANT_ID, principal.key_id, _hash(token), now, now + lifetime
    )
    return token


async def principal_of(token: str | None, *, now: datetime) -> Principal | None:
    """Who a session token stands for, or None (unknown, expired, ended, key revoked)."""
    if not _usable(token):
        return None
    row = await db_engine.current().pool.fetchrow(
        _FIND, PLATFORM_MERCHANT_ID, _hash(str(token)), now
    )
    if row is None:
        return None
    return Principal(
        key_id=row["id"],
        role=Role(row["role"]),
        merchant_id=row["merchant_id"],
        scopes=frozenset(row["scopes"]),
    )


async def end(token: str | None, *, now: datetime) -> None:
    """Log out: the session's token stops working at once."""
    if _usable(token):
        await db_engine.current().pool.execute(_END, PLATFORM_MERCHANT_ID, _hash(str(token)), now)


async def end_for_key(key_id: UUID, *, now: datetime) -> None:
    """Every session opened with this key ends (the key was revoked). Runs in the caller's
    transaction when there is one."""
    await FinanceSession.raw(_END_FOR_KEY, now, PLATFORM_MERCHANT_ID, key_id)
