"""Fixtures for the Stripe stand-in: a running stand-in, an SDK client on it, a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from webhooks.standin import StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    running = StandIn.start(port=0, timeout_seconds=0.3)
    yield running
    running.stop()


@pytest.fixture
def client(standin: StandIn) -> stripe.StripeClient:
    return standin.sdk_client()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records what it gets and answers ``status``."""

    url: str = ""
    status: int = 200
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"got {len(self.received)} webhooks, wanted {count}")
                self.cond.wait(remaining)
            return list(self.received)

    def event_ids(self) -> list[str]:
        with self.cond:
            return [r.event["id"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay_seconds)
            if state.status == 200:
                with state.cond:
                    state.received.append(Received(dict(self.headers), body))
                    state.cond.notify_all()
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def hooked(receiver: Receiver) -> Iterator[StandIn]:
    """A stand-in that sends its webhooks to ``receiver``."""
    running = StandIn.start(port=0, webhook_url=receiver.url, webhook_secret="whsec_test")
    running.webhooks.retry_backoff_seconds = 0.01
    yield running
    running.stop()


def paid_invoice(client: stripe.StripeClient, amount: int = 10_000) -> stripe.Invoice:
    """A customer with one finalized and paid invoice of ``amount`` (usd minor units)."""
    customer = client.v1.customers.create(params={"name": "Paying Co", "email": "ap@paying.test"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": amount, "currency": "usd", "description": "Plan"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    return client.v1.invoices.pay(invoice.id)


def charge_of(client: stripe.StripeClient, invoice: stripe.Invoice) -> stripe.Charge:
    intent_id = invoice.payments.data[0].payment.payment_intent
    intent = client.v1.payment_intents.retrieve(intent_id)
    return client.v1.charges.retrieve(intent.latest_charge)
