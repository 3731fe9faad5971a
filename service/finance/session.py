"""The finance page's login: a short-lived server-side session in an HttpOnly cookie.

Logging in with an operator key that has ``finance:read`` (the finance page) or
``support:read`` (the support view) opens a session (``service.tenancy.sessions``): the cookie
holds a random token, the database its hash, the key it was opened with and its end. Logging
out, or revoking the key, ends it at once on every process. The key itself is never stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from service.tenancy import keys, sessions
from service.tenancy.principal import KeyScope, Principal

COOKIE_NAME: Final = sessions.COOKIE_NAME
LIFETIME: Final = timedelta(hours=1)


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
    principal = await keys.authenticate(secret) if secret else None
    if principal is None or not may_log_in(principal):
        return None
    return principal, await sessions.open_session(principal, now=now, lifetime=LIFETIME)


async def principal_of(cookie: str | None, *, now: datetime) -> Principal | None:
    """The operator a session cookie stands for, or ``None`` (absent, unknown, expired, logged
    out, key revoked, no longer allowed)."""
    principal = await sessions.principal_of(cookie, now=now)
    return principal if may_log_in(principal) else None


async def close_session(cookie: str | None, *, now: datetime) -> None:
    await sessions.end(cookie, now=now)
