"""Fixtures for the Stripe stand-in: a running stand-in, an SDK client on it, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.webhook_receiver import Receiver, receiving
from webhooks.standin import StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    running = StandIn.start(port=0, timeout_seconds=0.3)
    yield running
    running.stop()


@pytest.fixture
def client(standin: StandIn) -> stripe.StripeClient:
    return standin.sdk_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture
def hooked(receiver: Receiver) -> Iterator[StandIn]:
    """A stand-in that sends its webhooks to ``receiver``."""
    running = StandIn.start(port=0, webhook_url=receiver.url, webhook_secret="whsec_test")
    running.webhooks.retry_backoff_seconds = 0.01
    yield running
    running.stop()


def paying_customer(
    client: stripe.StripeClient, card: str = "tok_visa", **params: str
) -> stripe.Customer:
    """A customer with a card its invoices are paid with (as Checkout and our integration
    leave it): without one, Stripe refuses to pay its invoices."""
    customer = client.v1.customers.create(params={"name": "Paying Co", **params})  # type: ignore[typeddict-item]
    method = client.v1.payment_methods.create(params={"type": "card", "card": {"token": card}})
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    return client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": method.id}}
    )


def paid_invoice(client: stripe.StripeClient, amount: int = 10_000) -> stripe.Invoice:
    """A customer with one finalized and paid invoice of ``amount`` (usd minor units)."""
    customer = paying_customer(client, name="Paying Co", email="ap@paying.test")
    invoice = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": amount, "currency": "usd", "description": "Plan"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    # Invoice.payments is includable: Stripe answers it only when asked for.
    return client.v1.invoices.pay(invoice.id, params={"expand": ["payments"]})


def charge_of(client: stripe.StripeClient, invoice: stripe.Invoice) -> stripe.Charge:
    intent_id = invoice.payments.data[0].payment.payment_intent
    intent = client.v1.payment_intents.retrieve(intent_id)
    return client.v1.charges.retrieve(intent.latest_charge)
