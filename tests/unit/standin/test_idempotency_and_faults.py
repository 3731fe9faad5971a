"""Idempotency keys like Stripe's, and failures on demand that leave no trace."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from webhooks.standin import StandIn

from .conftest import paying_customer


def test_same_key_same_params_replays_the_first_answer(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    params = {"name": "Once Only", "metadata": {"tenant_id": "t-9"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "signup-t-9"})
    again = client.v1.customers.create(params=params, options={"idempotency_key": "signup-t-9"})
    assert again.id == first.id
    assert standin.count("customer") == 1
    assert len(standin.events("customer.created")) == 1


def test_a_key_stripe_has_forgotten_makes_a_new_object(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    params = {"name": "A day later"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "day-1"})
    standin.forget_idempotency_keys()  # Stripe keeps keys for 24 hours
    again = client.v1.customers.create(params=params, options={"idempotency_key": "day-1"})
    assert again.id != first.id
    assert standin.count("customer") == 2


def test_replay_is_marked_with_idempotent_replayed_header(standin: StandIn) -> None:
    headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": "raw-1"}
    with httpx.Client(base_url=standin.base_url, trust_env=False) as http:
        first = http.post("/v1/customers", data={"name": "Raw"}, headers=headers)
        second = http.post("/v1/customers", data={"name": "Raw"}, headers=headers)
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


def test_same_key_other_params_is_an_idempotency_error(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "k-1"})
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.create(params={"name": "B"}, options={"idempotency_key": "k-1"})
    assert caught.value.http_status == 400
    assert "same parameters" in caught.value.user_message
    assert standin.count("customer") == 1


def test_same_key_on_another_endpoint_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "k-2"})
    with pytest.raises(stripe.IdempotencyError):
        client.v1.products.create(params={"name": "A"}, options={"idempotency_key": "k-2"})


def test_business_errors_are_replayed_but_validation_errors_are_not_saved(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(
            params={"customer": "cus_nope"}, options={"idempotency_key": "k-3"}
        )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(
            params={"customer": "cus_nope"}, options={"idempotency_key": "k-3"}
        )
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"nam": "x"}, options={"idempotency_key": "k-4"})
    fixed = client.v1.customers.create(params={"name": "x"}, options={"idempotency_key": "k-4"})
    assert fixed.name == "x"


def test_injected_500_raises_api_error_and_creates_nothing(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    standin.fail_next(1, status=500)
    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.create(params={"name": "Nope"})
    assert caught.value.http_status == 500
    assert standin.count("customer") == 0
    assert standin.events() == []
    assert client.v1.customers.create(params={"name": "Yes"}).name == "Yes"


def test_injected_429_raises_rate_limit_error(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    standin.fail_next(1, status=429)
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()


def test_injected_timeout_drops_the_connection(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    standin.fail_next(1, status="timeout")
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"name": "Slow"})
    assert time.monotonic() - started >= 0.3
    assert standin.count("customer") == 0


def test_faults_can_target_one_path_and_method(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="Target")
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(params={"invoice": invoice.id, "amount": 100, "currency": "usd"})
    client.v1.invoices.finalize_invoice(invoice.id)
    standin.fail_next(1, status=503, path_prefix="/v1/invoices/", method="POST")
    client.v1.customers.retrieve(customer.id)
    with pytest.raises(stripe.APIError):
        client.v1.invoices.pay(invoice.id)
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    assert standin.count("charge") == 0
    assert client.v1.invoices.pay(invoice.id).status == "paid"


def test_sdk_retries_with_the_same_key_and_one_object_results(standin: StandIn) -> None:
    client = standin.sdk_client(max_network_retries=2)
    standin.fail_next(2, status=500)
    customer = client.v1.customers.create(
        params={"name": "Retried"}, options={"idempotency_key": "outbox-row-17"}
    )
    assert customer.name == "Retried"
    assert standin.faults.injected["500"] == 2
    assert standin.count("customer") == 1
    (created,) = standin.events("customer.created")
    assert created["request"]["idempotency_key"] == "outbox-row-17"


def test_sdk_retries_a_429_when_told_it_may(standin: StandIn) -> None:
    client = standin.sdk_client(max_network_retries=1)
    standin.fail_next(1, status=429, should_retry=True)
    assert client.v1.products.create(params={"name": "Eventually"}).name == "Eventually"
    assert standin.count("product") == 1


def test_outage_fails_everything_until_cleared_and_nothing_is_created_twice(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    keys = [f"outbox-{n}" for n in range(3)]
    standin.start_outage(status=500)
    for key in keys:
        with pytest.raises(stripe.APIError):
            client.v1.customers.create(params={"name": key}, options={"idempotency_key": key})
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    assert standin.count("customer") == 0
    standin.end_outage()
    for _ in range(2):  # the worker pushes everything after recovery, then once more
        for key in keys:
            client.v1.customers.create(params={"name": key}, options={"idempotency_key": key})
    assert standin.count("customer") == 3
    assert sorted(c["name"] for c in standin.objects("customer")) == sorted(keys)


def test_missing_api_key_is_an_authentication_error(standin: StandIn) -> None:
    with httpx.Client(base_url=standin.base_url, trust_env=False) as http:
        response = http.get("/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_answers_404_in_stripe_shape(standin: StandIn) -> None:
    with httpx.Client(base_url=standin.base_url, trust_env=False) as http:
        response = http.get("/v1/subscriptions", headers={"Authorization": "Bearer sk_test_x"})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL")
