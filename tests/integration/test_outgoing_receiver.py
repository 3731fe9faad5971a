# ruff: noqa: F811 - fixtures are imported from the helpers
"""The README's receiver example, run as it is written there (its own process, its own server),
gets real deliveries and verifies each; a forged, tampered or stale one is refused. Stripe's own
library verifies our signatures too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from service.outgoing import signing
from tests.e2e.conftest import free_port
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.outgoing_helpers import (  # noqa: F401 - fixtures
    Deliverer,
    receiver_example_source,
    registered,
    wait_for,
    webhook_client,
    webhook_settings,
)


def url_at(port: int) -> str:
    return f"http://127.0.0.1:{port}/kefu/webhooks"


class ExampleProcess:
    def __init__(self, tmp_path: Path, port: int, secret: str) -> None:
        script = tmp_path / "receiver.py"
        script.write_text(receiver_example_source(), encoding="utf-8")
        self.port = port
        self.out = (tmp_path / "out.txt").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, "KEFU_WEBHOOK_SECRET": secret, "PORT": str(self.port)},
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(self.url, timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError("the README receiver did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return url_at(self.port)

    def printed(self) -> list[dict[str, Any]]:
        self.out.seek(0)
        return [json.loads(line) for line in self.out.read().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.out.close()


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Any]:
    started: list[ExampleProcess] = []

    def start(port: int, secret: str) -> ExampleProcess:
        running = ExampleProcess(tmp_path, port, secret)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


async def test_the_readme_receiver_verifies_real_deliveries_and_refuses_forgeries(
    webhook_client: httpx.AsyncClient, operator: Tenant, example: Any
) -> None:
    # The receiver's address is chosen, the endpoint registered there, and the receiver started
    # with the secret the registration answered (as an integrator does it).
    port = free_port()
    async with registered(webhook_client, operator, url_at(port)) as endpoint:
        receiver = example(port, endpoint.secret)
        tenant, subscription = await signup_tenant(webhook_client, operator, name="README shop")
        await webhook_client.post(
            f"/v1/subscriptions/{subscription['id']}/pause", headers=tenant.headers
        )
        deliverer = Deliverer([endpoint.id])
        summary = await deliverer.run()
        await deliverer.close()
        assert summary.delivered == 2
        assert summary.retrying == 0
        wait_for(lambda: len(receiver.printed()) == 2)
        printed = receiver.printed()
        assert [p["type"] for p in printed] == ["subscription.created", "subscription.updated"]
        assert {p["merchant_id"] for p in printed} == {str(tenant.merchant_id)}

        body = b'{"id": "forged", "type": "subscription.resumed", "merchant_id": "x"}'
        now = int(time.time())
        async with httpx.AsyncClient() as http:
            for header in (
                "t=1,v1=00",
                signing.header("whsec_not_the_secret", body, now),
                signing.header(endpoint.secret, body, now - 3600),  # stale: a replayed request
                signing.header(endpoint.secret, body, now).replace("t=", "t=1"),
                "",
            ):
                refused = await http.post(
                    receiver.url, content=body, headers={"Kefu-Signature": header}
                )
                assert refused.status_code == 400, header
            tampered = await http.post(
                receiver.url,
                content=body.replace(b"forged", b"forgeD"),
                headers={"Kefu-Signature": signing.header(endpoint.secret, body, now)},
            )
            assert tampered.status_code == 400
            accepted = await http.post(
                receiver.url,
                content=body,
                headers={
                    "Kefu-Signature": signing.header(endpoint.secret, body, now),
                    "Kefu-Delivery-Id": "by-hand",
                },
            )
        assert accepted.status_code == 200  # what the secret signs is taken
        assert len(receiver.printed()) == 3


def test_stripes_own_library_verifies_our_signature() -> None:
    secret = signing.new_secret()
    body = b'{"id": "e1", "type": "invoice.paid"}'
    header = signing.header(secret, body, int(time.time()))
    assert stripe.WebhookSignature.verify_header(body.decode(), header, secret, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, secret + "x", 300)


def test_a_secret_never_shows_itself_in_a_repr() -> None:
    secret = signing.new_secret()
    assert secret not in repr(secret)
    assert secret not in repr({"secret": secret})
    assert str(secret).startswith("whsec_")
