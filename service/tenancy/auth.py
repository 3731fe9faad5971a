"""Authentication: every route needs a key unless it opts out; the key's scope; operator guard."""

from __future__ import annotations

import re
from http.cookies import CookieError, SimpleCookie
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.clock import SYSTEM_CLOCK
from service.errors import BillingError, Forbidden, Unauthenticated
from service.problems import send_error
from service.ratelimit import RateLimiter
from service.tenancy import keys, sessions
from service.tenancy.principal import Actor, KeyScope, Principal
from service.tenancy.scope import TenantScope

PUBLIC = {"exclude_from_auth": True}
"""Route ``opt`` for endpoints that need no key (health, docs, metrics, Stripe webhooks)."""

DOCUMENTS_FOR_FINANCE_SESSIONS = {"documents_for_finance_sessions": True}
"""Route ``opt``: its documents (paths ending ``.html`` or ``.pdf``) also open with a finance
page session (the cookie of an operator key with ``finance:read``), so finance opens invoices
in a browser. Everything else on the route still needs a key."""
DOCUMENT_SUFFIXES = (".html", ".pdf")


class ApiKeyAuthentication:
    """Default-deny authentication as a plain ASGI middleware: no key, no entry.

    It answers 401 itself (middleware errors would otherwise skip the request-context and
    metrics middleware that wrap it) and binds ``merchant_id`` to the request's log context.
    A merchant's request then takes its unit from the merchant's rate limit (``limiter``,
    `service.ratelimit`): refused with a 429 here, before the route does anything.
    """

    def __init__(
        self,
        app: ASGIApp,
        exclude: str = "^/(schema|static|metrics)",
        limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.exclude = re.compile(exclude)
        self.limiter = limiter if limiter is not None and limiter.is_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        secret = _presented_key(scope)
        principal = await keys.authenticate(secret) if secret else None
        if principal is None and secret is None and _opens_documents_for_sessions(scope):
            try:
                principal = await _finance_session(scope)
            except Forbidden as refusal:
                await _refuse(scope, send, refusal)
                return
            if principal is not None:
                scope["user"] = principal
                await self.app(scope, receive, send)
                return
        if principal is None:
            await _refuse(
                scope,
                send,
                Unauthenticated(
                    "this API key is unknown or revoked"
                    if secret
                    else "send your API key as 'Authorization: Bearer <key>'"
                ),
            )
            return
        try:
            _require_scopes(principal, scope)
        except Forbidden as refusal:
            await _refuse(scope, send, refusal)
            return
        scope["user"] = principal
        merchant_id = principal.merchant_id
        if merchant_id is not None:
            structlog.contextvars.bind_contextvars(merchant_id=str(merchant_id))
            if self.limiter is not None:
                limiter = self.limiter
                tier = limiter.known_tier(merchant_id) or await limiter.look_up_tier(merchant_id)
                verdict = limiter.take(merchant_id, tier)
                if verdict is not None and verdict.shows_headers:
                    if not verdict.is_allowed:
                        await _refuse(scope, send, verdict.refusal(), headers=verdict.headers())
                        return
                    send = _adding_headers(send, verdict.headers())
        await self.app(scope, receive, send)

    def _is_public(self, scope: Scope) -> bool:
        handler = scope.get("route_handler")
        if handler is not None and handler.opt.get("exclude_from_auth"):
            return True
        return bool(self.exclude.match(scope["path"]))


def _opens_documents_for_sessions(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    return bool(
        handler is not None
        and handler.opt.get("documents_for_finance_sessions")
        and str(scope["path"]).endswith(DOCUMENT_SUFFIXES)
    )


async def _finance_session(scope: Scope) -> Principal | None:
    """The operator of the request's finance session cookie, if it holds ``finance:read``;
    None without a usable session. A session without ``finance:read`` (support staff) is
    refused: support opens documents from the support view, where each look is audited."""
    raw = ";".join(value.decode("latin-1") for name, value in scope["headers"] if name == b"cookie")
    try:
        morsel = SimpleCookie(raw).get(sessions.COOKIE_NAME)
    except CookieError:
        return None
    if morsel is None:
        return None
    principal = await sessions.principal_of(morsel.value, now=SYSTEM_CLOCK.now())
    if principal is None:
        return None
    if not (principal.is_operator and principal.has_scope(KeyScope.FINANCE_READ)):
        raise Forbidden(
            "this session may not open invoice documents here: support staff open them from "
            "the merchant's page in the support view (/finance/support)"
        )
    return principal


async def _refuse(
    scope: Scope, send: Send, error: BillingError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    challenge = [(b"www-authenticate", b"Bearer")] if error.status == 401 else []
    await send_error(scope, send, error, headers=[*challenge, *(headers or [])])


def _adding_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else None
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


def requires(scope: str, *, or_for_operators: str | None = None) -> dict[str, str]:
    """Route ``opt`` naming the scope a route needs instead of the method's default;
    ``or_for_operators`` is another scope that lets an operator key in (``support:read`` on the
    reads support staff make)."""
    opt = {"scope": scope}
    if or_for_operators is not None:
        opt["operator_scope"] = or_for_operators
    return opt


def _require_scopes(principal: Principal, scope: Scope) -> None:
    needed = _needed_scope(scope)
    handler = scope.get("route_handler")
    alternative = handler.opt.get("operator_scope") if handler is not None else None
    if alternative and principal.is_operator and principal.has_scope(str(alternative)):
        return
    keys.require_scope(principal, needed)


def _needed_scope(scope: Scope) -> str:
    """The scope a route needs: its ``opt["scope"]`` when it names one (``usage:write``,
    ``signup``, ...), else ``billing:read`` for reads and ``billing:write`` for changes.

    Checked here rather than in a Litestar guard: Litestar copies the route handler for every
    guard call, which on a single-event request cost more than the event's own work."""
    handler = scope.get("route_handler")
    named = handler.opt.get("scope") if handler is not None else None
    if named:
        return str(named)
    is_read = scope.get("method") in ("GET", "HEAD")
    return KeyScope.BILLING_READ if is_read else KeyScope.BILLING_WRITE


async def operator_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: operators only. A merchant key is told the resource does not exist for it."""
    principal: Principal = connection.user
    if not principal.is_operator:
        raise Forbidden("this endpoint is for operators")


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return request.user  # type: ignore[no-any-return]


async def provide_tenant(request: Request[Any, Any, Any]) -> TenantScope:
    return TenantScope(request.user)


async def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    return Actor.of(request.user, request_id=request.scope.get("state", {}).get("request_id", ""))
