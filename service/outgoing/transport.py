"""One HTTP POST of a delivery, with the limits a request to an address someone else chose needs.

- The address check happens **when connecting** (`GuardedBackend`): the host is resolved here,
  every address it resolves to must pass `addresses.refusal` (unless private addresses are
  allowed), and the socket connects to an address that was checked. A refused host never gets a
  connection attempt.
- Redirects are never followed (httpcore does not follow them; a 3xx is a failed attempt).
- No proxy from the environment is used (a proxy would connect for us, unchecked).
- The whole attempt, resolving included, is cut at ``timeout_seconds``.
- Of the answer only the status and a short excerpt of the body are kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpcore

from service.outgoing.addresses import AddressRefused, IPAddress, check_url, refusal

EXCERPT_BYTES: Final = 300
USER_AGENT: Final = "Kefu-Billing-Webhooks/1"

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (the operating system's resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # no IPv6 zone id
        if address not in found:
            found.append(address)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address rule applied before any socket connects."""

    def __init__(
        self,
        *,
        allows_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allows_private = allows_private
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.resolver(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve: {error}") from None
        if not addresses:
            raise AddressRefused(f"{host} resolves to no address")
        if not self.allows_private:
            for address in addresses:  # one bad answer refuses them all: no choosing the good one
                reason = refusal(address)
                if reason is not None:
                    raise AddressRefused(f"{host} refused: {reason}")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("a webhook never goes to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did: ``delivered`` (2xx), ``failed`` (another answer, or no answer) or
    ``refused`` (the address rule: nothing was sent)."""

    outcome: str
    status_code: int | None
    latency_ms: int
    error: str | None
    excerpt: str | None

    @property
    def is_delivered(self) -> bool:
        return self.outcome == "delivered"


class Sender:
    """Posts deliveries. One per worker; connections to an endpoint are reused while alive."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        requires_https: bool,
        allows_private: bool,
        resolver: Resolver = system_resolver,
        inner_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.requires_https = requires_https
        self.allows_private = allows_private
        self.backend = GuardedBackend(
            allows_private=allows_private, resolver=resolver, inner=inner_backend
        )
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=self.backend,
            max_connections=64,
            keepalive_expiry=30.0,
            retries=0,
            http1=True,
            http2=False,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            check_url(url, requires_https=self.requires_https, allows_private=self.allows_private)
        except Exception as error:  # a URL valid once may not be now (production: https)
            return Outcome("refused", None, 0, _short(getattr(error, "detail", str(error))), None)
        limit = self.timeout_seconds
        try:
            async with asyncio.timeout(limit):
                status, excerpt = await self._post(url, body, headers, limit)
        except AddressRefused as error:
            return Outcome("refused", None, took(), _short(str(error)), None)
        except (TimeoutError, httpcore.TimeoutException):
            return Outcome("failed", None, took(), f"no answer within {limit:g} s", None)
        except (httpcore.ConnectError, OSError) as error:
            return Outcome("failed", None, took(), _short(f"could not connect: {error}"), None)
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as e:
            return Outcome("failed", None, took(), _short(f"{type(e).__name__}: {e}"), None)
        if 200 <= status < 300:
            return Outcome("delivered", status, took(), None, excerpt)
        what = "a redirect, which is not followed" if 300 <= status < 400 else "not a 2xx"
        return Outcome("failed", status, took(), f"answered {status}: {what}", excerpt)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], limit: float
    ) -> tuple[int, str]:
        sent_headers = [
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            *headers.items(),
        ]
        timeouts = {"connect": limit, "read": limit, "write": limit, "pool": limit}
        async with self._pool.stream(
            "POST", url, headers=sent_headers, content=body, extensions={"timeout": timeouts}
        ) as response:
            kept = b""
            async for chunk in response.aiter_stream():  # type: ignore[attr-defined]
                kept += chunk
                if len(kept) >= EXCERPT_BYTES:
                    break  # the rest is never read (the connection is closed, not reused)
            return response.status, _storable(kept[:EXCERPT_BYTES].decode("utf-8", "replace"))

    async def aclose(self) -> None:
        await self._pool.aclose()


def _short(text: str) -> str:
    text = _storable(text)
    return text if len(text) <= 300 else text[:297] + "..."


def _storable(text: str) -> str:
    """PostgreSQL text holds no NUL character; a receiver may answer with them."""
    return text.replace("\x00", "\ufffd")
