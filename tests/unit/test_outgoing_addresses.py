"""Where a webhook delivery may go: the address rule, table by table, and the proof that a refused
host never gets a connection attempt (an injected resolver answers; no socket connects)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpcore
import pytest

from service.errors import InvalidInput
from service.outgoing.addresses import check_url, refusal
from service.outgoing.transport import GuardedBackend, Sender

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "100.64.0.1": "not a public",  # shared (CGNAT)
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "private",
    "192.0.2.10": "private",  # documentation
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",  # unique-local
    "fd12:3456:789a::1": "private",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",  # v4-mapped
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "private",  # Teredo to 10.0.0.1
}

ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), sorted(REFUSED.items()))
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://platform.example.com/hooks", "https in production"),
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://[::1]:8443/hooks", "loopback"),
        ("https://[::ffff:10.0.0.1]/hooks", "private"),
        ("https://localhost/hooks", "this machine"),
        ("https://api.localhost/hooks", "this machine"),
        ("https://user:secret@platform.example.com/", "user or password"),
        ("gopher://platform.example.com/", "https://"),
        ("https:///no-host", "needs a host"),
        ("https://platform.example.com:99999/", "not a valid URL"),
        ("https://bücher.example/hooks", "xn--"),
        ("https://platform.example.com/a#frag", "fragment"),
    ],
)
def test_production_registration_refuses(url: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_url(url, requires_https=True, allows_private=False)
    assert words in refused.value.detail
    assert refused.value.extra["field"] == "url"


def test_the_development_allowance_lifts_the_address_rule_only() -> None:
    target = check_url("http://127.0.0.1:9000/hooks", requires_https=False, allows_private=True)
    assert (target.host, target.port) == ("127.0.0.1", 9000)
    with pytest.raises(InvalidInput, match="user or password"):
        check_url("http://u:p@127.0.0.1/", requires_https=False, allows_private=True)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands where the sockets would be: records what it is asked to connect to."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, **_: Any) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("recording backend: no network here")


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every socket connect attempted in the test (each also fails it)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"a socket connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def resolving_to(*addresses: str) -> Any:
    async def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(address) for address in addresses]

    return resolver


@pytest.mark.parametrize(
    "answers",
    [
        ("10.0.0.7",),
        ("169.254.169.254",),
        ("::ffff:127.0.0.1",),
        ("fd00::5",),
        ("93.184.216.34", "127.0.0.1"),  # one bad answer among good ones refuses the host
    ],
)
async def test_a_host_resolving_to_a_private_address_is_refused_before_connecting(
    answers: tuple[str, ...], no_sockets: list[object]
) -> None:
    inner = RecordingBackend()
    sender = Sender(
        timeout_seconds=2,
        requires_https=True,
        allows_private=False,
        resolver=resolving_to(*answers),
        inner_backend=inner,
    )
    outcome = await sender.post("https://hooks.platform.example/kefu", b"{}", {})
    await sender.aclose()
    assert outcome.outcome == "refused"
    assert "refused" in (outcome.error or "")
    assert inner.connects == []
    assert no_sockets == []


async def test_with_the_real_network_backend_no_socket_connects_to_a_refused_address(
    no_sockets: list[object],
) -> None:
    sender = Sender(
        timeout_seconds=2,
        requires_https=False,
        allows_private=False,
        resolver=resolving_to("10.255.255.1"),
    )
    outcome = await sender.post("http://internal.platform.example/kefu", b"{}", {})
    await sender.aclose()
    assert outcome.outcome == "refused"
    assert "10.255.255.1 is a private address" in (outcome.error or "")
    assert no_sockets == []


async def test_an_allowed_host_is_connected_at_the_address_that_was_checked() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(
        allows_private=False, resolver=resolving_to("93.184.216.34", "8.8.8.8"), inner=inner
    )
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("hooks.platform.example", 443)
    assert inner.connects == [("93.184.216.34", 443), ("8.8.8.8", 443)]


async def test_a_url_valid_once_is_refused_at_delivery_when_production_wants_https() -> None:
    inner = RecordingBackend()
    sender = Sender(
        timeout_seconds=2,
        requires_https=True,
        allows_private=False,
        resolver=resolving_to("93.184.216.34"),
        inner_backend=inner,
    )
    outcome = await sender.post("http://hooks.platform.example/kefu", b"{}", {})
    await sender.aclose()
    assert outcome.outcome == "refused"
    assert "https" in (outcome.error or "")
    assert inner.connects == []
