"""Signed webhook delivery: verifiable signatures, duplicates, delays, disorder, outages."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter

import pytest
import stripe

from tests.webhook_receiver import Receiver
from webhooks.standin import StandIn
from webhooks.standin.webhook_sender import sign

from .conftest import paid_invoice


def verify(received: list, secret: str = "whsec_test") -> list[stripe.Event]:
    return [
        stripe.Webhook.construct_event(r.body.decode(), r.headers["Stripe-Signature"], secret)
        for r in received
    ]


def test_events_arrive_signed_and_verify_with_the_sdk(hooked: StandIn, receiver: Receiver) -> None:
    client = hooked.sdk_client()
    customer = client.v1.customers.create(params={"name": "Signed"})
    (received,) = receiver.wait_for(1)
    (event,) = verify([received])
    assert event.type == "customer.created"
    assert event.data.object.id == customer.id
    header = received.headers["Stripe-Signature"]
    assert header.startswith("t=")
    assert ",v1=" in header
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(received.body.decode(), header, "whsec_other")
    tampered = received.body.decode().replace("Signed", "Forged")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, "whsec_test")


def test_signature_scheme_is_hmac_sha256_of_timestamp_dot_payload() -> None:
    expected = hmac.new(b"whsec_x", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"{}", "whsec_x", 1700000000) == f"t=1700000000,v1={expected}"
    header = sign(b'{"id": "evt_1"}', "whsec_x", int(time.time()))
    assert stripe.Webhook.construct_event('{"id": "evt_1"}', header, "whsec_x").id == "evt_1"


def test_delivery_marks_the_event_as_no_longer_pending(hooked: StandIn, receiver: Receiver) -> None:
    hooked.sdk_client().v1.customers.create(params={"name": "Pending"})
    receiver.wait_for(1)
    assert hooked.webhooks.wait_idle()
    assert hooked.events()[0]["pending_webhooks"] == 0


def test_duplicate_mode_sends_every_event_n_times(hooked: StandIn, receiver: Receiver) -> None:
    hooked.webhooks.configure(duplicates=3)
    client = hooked.sdk_client()
    client.v1.customers.create(params={"name": "Twice"})
    client.v1.products.create(params={"name": "Thrice"})
    received = receiver.wait_for(6)
    assert Counter(e.type for e in verify(received)) == {
        "customer.created": 3,
        "product.created": 3,
    }
    assert len({r.event["id"] for r in received}) == 2


def test_held_events_are_released_shuffled_with_copies(hooked: StandIn, receiver: Receiver) -> None:
    hooked.webhooks.hold()
    paid_invoice(hooked.sdk_client())
    emitted = [e["id"] for e in hooked.events()]
    assert hooked.webhooks.held() == emitted
    time.sleep(0.05)
    assert receiver.received == []
    sent = hooked.webhooks.release("shuffle", copies=3, seed=7)
    assert sent == 3 * len(emitted)
    received = receiver.wait_for(sent)
    order = [r.event["id"] for r in received]
    assert Counter(order) == dict.fromkeys(emitted, 3)
    assert order != [event_id for event_id in emitted for _ in range(3)]
    assert len(verify(received)) == sent
    assert hooked.webhooks.held() == []


def test_release_in_a_chosen_order_keeps_the_rest_held(hooked: StandIn, receiver: Receiver) -> None:
    hooked.webhooks.hold()
    client = hooked.sdk_client()
    for name in ("one", "two", "three"):
        client.v1.customers.create(params={"name": name})
    first, second, third = hooked.webhooks.held()
    hooked.webhooks.release([third, first])
    receiver.wait_for(2)
    assert receiver.event_ids() == [third, first]
    assert hooked.webhooks.held() == [second]
    hooked.webhooks.release("reverse")
    receiver.wait_for(3)
    assert receiver.event_ids()[-1] == second


def test_delay_mode_sends_later_without_slowing_the_api(
    hooked: StandIn, receiver: Receiver
) -> None:
    hooked.webhooks.configure(delay_seconds=0.4)
    started = time.monotonic()
    hooked.sdk_client().v1.customers.create(params={"name": "Later"})
    assert time.monotonic() - started < 0.3
    time.sleep(0.1)
    assert receiver.received == []
    receiver.wait_for(1, timeout=3)
    assert time.monotonic() - started >= 0.4


def test_shuffle_window_mode_sends_each_window_in_random_order(
    hooked: StandIn, receiver: Receiver
) -> None:
    hooked.webhooks.configure(shuffle_window=6, seed=3)
    client = hooked.sdk_client()
    for n in range(6):
        client.v1.customers.create(params={"name": f"c{n}"})
    received = receiver.wait_for(6)
    emitted = [e["id"] for e in hooked.events()]
    assert sorted(r.event["id"] for r in received) == sorted(emitted)
    assert [r.event["id"] for r in received] != emitted


def test_slow_receiver_does_not_slow_the_api(hooked: StandIn, receiver: Receiver) -> None:
    receiver.delay_seconds = 0.2
    client = hooked.sdk_client()
    started = time.monotonic()
    for n in range(3):
        client.v1.customers.create(params={"name": f"c{n}"})
    assert time.monotonic() - started < 0.2
    receiver.wait_for(3, timeout=5)


def test_receiver_down_leaves_events_undelivered_then_resendable(
    hooked: StandIn, receiver: Receiver
) -> None:
    receiver.status = 500
    client = hooked.sdk_client()
    customer = client.v1.customers.create(params={"name": "Down"})
    assert hooked.webhooks.wait_idle()
    (event_id,) = hooked.webhooks.undelivered()
    attempts = [d for d in hooked.webhooks.deliveries() if d.event_id == event_id]
    assert [d.attempt for d in attempts] == [1, 2, 3]
    assert client.v1.customers.retrieve(customer.id).name == "Down"  # the API kept working
    receiver.status = 200
    assert hooked.webhooks.resend_undelivered() == 1
    (received,) = receiver.wait_for(1)
    assert received.event["id"] == event_id
    assert hooked.webhooks.undelivered() == []


def test_no_webhook_url_keeps_events_for_later(standin: StandIn, receiver: Receiver) -> None:
    standin.sdk_client().v1.customers.create(params={"name": "Quiet"})
    assert len(standin.webhooks.undelivered()) == 1
    standin.webhooks.url = receiver.url
    standin.webhooks.resend_undelivered()
    verify(receiver.wait_for(1), secret=standin.webhook_secret)
