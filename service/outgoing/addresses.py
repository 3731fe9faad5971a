"""Where a delivery may go: never a request to anywhere a merchant chooses without limits.

Two checks. When an endpoint is registered its URL is checked on its face (`check_url`): http or
https (https only in production), a host, no user or password in it, and a host that is an
address or ``localhost`` must be a public one. The check that counts happens when a delivery
connects (`service.outgoing.transport`): the host is resolved, **every** address it resolves to
must pass `refusal`, and the connection goes to the address that was checked (so a name that
resolves differently a moment later changes nothing). Refused: loopback, private, link-local,
unique-local, site-local, shared (CGNAT), multicast, unspecified, reserved and documentation
ranges, IPv4 inside IPv6 (v4-mapped, 6to4, Teredo, NAT64) when the IPv4 is one of those.
``BILLING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1`` lifts the address rule for development and tests.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from service.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed `check_url`: where to connect, and the URL to send."""

    scheme: str
    host: str
    port: int
    url: str


class AddressRefused(Exception):
    """A delivery's host resolves to an address we do not connect to (or to none)."""


def refusal(address: IPAddress) -> str | None:
    """Why a delivery must not connect to ``address``, or None when it may (a public one)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None and address in _NAT64:
            mapped = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if mapped is not None:  # an IPv4 address written as IPv6: judged as that IPv4
            reason = refusal(mapped)
            return f"{reason} (as {address})" if reason is not None else None
        for embedded in _tunnelled_ipv4(address):
            reason = refusal(embedded)
            if reason is not None:
                return f"{reason} (inside {address})"
    for is_it, what in (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_reserved, "reserved"),
    ):
        if is_it:
            article = "an" if what[0] in "aeiou" else "a"
            return f"{address} is {article} {what} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 tunnel address leads to: 6to4, Teredo (both ends)."""
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def check_url(url: str, *, requires_https: bool, allows_private: bool) -> Target:
    """``url`` as a delivery target, or InvalidInput (field ``url``) saying what to change."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidInput(f"url is not a valid URL: {error}", field="url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidInput(
            "url must start with https:// (or http:// outside production)", field="url"
        )
    if scheme == "http" and requires_https:
        raise InvalidInput("url must use https in production", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url must not carry a user or password: authenticate deliveries by their signature",
            field="url",
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput("url needs a host, e.g. https://platform.example.com/hooks", field="url")
    if not host.isascii():
        raise InvalidInput(
            "url's host must be ASCII: write an international name in its xn-- form", field="url"
        )
    if any(ch.isspace() for ch in url) or parts.fragment:
        raise InvalidInput("url must have no spaces and no #fragment", field="url")
    if not allows_private:
        literal = _literal_address(host)
        reason = refusal(literal) if literal is not None else None
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            reason = f"{host} is this machine"
        if reason is not None:
            raise InvalidInput(f"url must reach a public address: {reason}", field="url")
    return Target(
        scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), url=url
    )


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
