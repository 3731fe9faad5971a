"""Ways to pay in the stand-in, no kinder than Stripe: an invoice is paid only with a card the
customer saved (Checkout in setup mode, the portal, the dashboard) or one named in the request;
a sent invoice is paid on its hosted page; a portal session needs a saved configuration."""

from __future__ import annotations

import httpx
import pytest
import stripe

from webhooks.standin import StandIn
from webhooks.standin.billing_portal import NO_DEFAULT_CONFIGURATION
from webhooks.standin.invoices import NO_PAYMENT_METHOD
from webhooks.standin.schema import StripeError

from .conftest import paying_customer


def _open_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 2_500, **params: object
) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "currency": "cny", **params}  # type: ignore[typeddict-item]
    )
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": amount, "currency": "cny"}
    )
    return client.v1.invoices.finalize_invoice(invoice.id)


def _setup_session(
    client: stripe.StripeClient, customer: stripe.Customer
) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer.id,
            "currency": "cny",
            "success_url": "https://shop.example/ok",
            "cancel_url": "https://shop.example/no",
            "setup_intent_data": {"metadata": {"kefu_merchant_id": "m-1"}},
        }
    )


def test_paying_without_a_saved_card_is_refused_as_stripe_refuses_it(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "No Card Co"})
    invoice = _open_invoice(client, customer)
    events_before = len(standin.events())
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.code == "resource_missing"
    assert caught.value.http_status == 400
    assert str(caught.value.user_message) == NO_PAYMENT_METHOD
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    assert standin.count("charge") == 0
    assert len(standin.events()) == events_before  # nothing was attempted


def test_a_card_of_another_customer_does_not_pay(client: stripe.StripeClient) -> None:
    owner = paying_customer(client, name="Owner")
    other = client.v1.customers.create(params={"name": "Other"})
    invoice = _open_invoice(client, other)
    card = owner.invoice_settings.default_payment_method
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.pay(invoice.id, params={"payment_method": str(card)})
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "payment_method"


def test_only_a_card_the_customer_saved_becomes_its_invoice_default(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"name": "Careful"})
    loose = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": loose.id}}
        )
    assert caught.value.param == "invoice_settings[default_payment_method]"
    with pytest.raises(stripe.InvalidRequestError, match="card numbers"):
        client.v1.payment_methods.create(params={"type": "card"})


def test_checkout_in_setup_mode_saves_a_card_that_then_pays_a_sent_invoice(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Saver", "email": "pay@saver.cn"})
    invoice = _open_invoice(client, customer, collection_method="send_invoice", days_until_due=14)
    session = _setup_session(client, customer)
    assert (session.status, session.mode, session.currency) == ("open", "setup", "cny")
    assert session.url.startswith(f"{standin.base_url}/_standin/checkout/")
    assert session.setup_intent is None

    standin.hosted.complete_checkout(session.id, card="tok_mastercard")

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.url) == ("complete", None)
    intent = client.v1.setup_intents.retrieve(
        str(done.setup_intent), params={"expand": ["payment_method"]}
    )
    assert (intent.status, intent.usage, intent.metadata["kefu_merchant_id"]) == (
        "succeeded",
        "off_session",
        "m-1",
    )
    card = intent.payment_method
    assert (card.customer, card.card.brand, card.card.last4) == (customer.id, "mastercard", "4444")
    # Checkout never makes the card the invoice default: the integration does.
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert [e["type"] for e in standin.events()][-4:] == [
        "payment_method.attached",
        "setup_intent.created",
        "setup_intent.succeeded",
        "checkout.session.completed",
    ]
    completed = standin.events("checkout.session.completed")[0]
    assert completed["request"]["id"] is None  # the customer did it, not an API request

    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": card.id})
    assert (paid.status, paid.amount_paid) == ("paid", 2_500)
    [charge] = standin.objects("charge")
    assert (charge["payment_method"], charge["payment_method_details"]["card"]["last4"]) == (
        card.id,
        "4444",
    )


def test_setup_sessions_are_refused_as_stripe_refuses_them(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Hasty"})
    base = {"mode": "setup", "customer": customer.id, "success_url": "https://s.example/ok"}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=base)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "currency")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(
            params={**base, "currency": "cny", "expires_at": standin.store.now() + 60}  # type: ignore[typeddict-item]
        )
    assert caught.value.param == "expires_at"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(
            params={"mode": "setup", "customer": customer.id, "currency": "cny"}
        )
    assert caught.value.param == "success_url"


def test_a_session_expires_and_then_cannot_be_completed(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Late"})
    session = _setup_session(client, customer)
    standin.set_time(session.expires_at)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    with pytest.raises(StripeError, match="expired"):
        standin.hosted.complete_checkout(session.id)
    assert standin.count("payment_method") == 0
    assert len(standin.events("checkout.session.expired")) == 1


def test_a_sent_invoice_is_sent_and_paid_on_its_hosted_page(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Transfer Co"})
    automatic = _open_invoice(client, customer)
    with pytest.raises(stripe.InvalidRequestError, match="send_invoice"):
        client.v1.invoices.send_invoice(automatic.id)
    sent = _open_invoice(client, customer, collection_method="send_invoice", days_until_due=30)
    assert sent.due_date == sent.status_transitions.finalized_at + 30 * 86400
    client.v1.invoices.send_invoice(sent.id)
    assert len(standin.events("invoice.sent")) == 1
    page = httpx.get(sent.hosted_invoice_url)
    assert page.status_code == 200
    assert sent.id in page.text

    response = httpx.post(f"{standin.base_url}/_standin/hosted/{sent.id}/pay", json={})
    assert response.status_code == 200, response.text
    paid = client.v1.invoices.retrieve(sent.id)
    assert (paid.status, paid.amount_paid) == ("paid", 2_500)
    [charge] = standin.objects("charge")
    assert charge["payment_method_details"]["type"] == "wechat_pay"
    assert standin.count("payment_method") == 1  # used once, saved for nobody
    assert standin.objects("payment_method")[0]["customer"] is None


def test_detaching_the_default_card_leaves_nothing_to_pay_with(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="Leaver")
    card = str(customer.invoice_settings.default_payment_method)
    client.v1.payment_methods.detach(card)
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert [e["type"] for e in standin.events()][-2:] == [
        "customer.updated",
        "payment_method.detached",
    ]
    detached = standin.events("payment_method.detached")[0]["data"]
    assert detached["previous_attributes"] == {"customer": customer.id}
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError, match="not attached"):
        client.v1.payment_methods.detach(card)


def test_a_card_that_fails_charges_is_declined_when_paying(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, card="tok_chargeCustomerFail", name="Bounced")
    invoice = _open_invoice(client, customer)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.code == "card_declined"
    assert client.v1.invoices.retrieve(invoice.id).attempt_count == 1


def test_a_portal_session_needs_a_saved_configuration(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="Portal Co")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.billing_portal.sessions.create(
            params={"customer": customer.id, "return_url": "https://shop.example/billing"}
        )
    assert str(caught.value.user_message) == NO_DEFAULT_CONFIGURATION

    made = client.v1.billing_portal.configurations.create(
        params={
            "features": {"payment_method_update": {"enabled": True}},
            "default_return_url": "https://shop.example/billing",
        }
    )
    assert made.is_default is False  # the API never makes the default
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "configuration": made.id}
    )
    assert (session.configuration, session.return_url) == (made.id, "https://shop.example/billing")
    assert session.url.startswith(f"{standin.base_url}/_standin/portal/")

    saved = standin.dashboard.save_portal_settings()
    by_default = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://shop.example/b"}
    )
    assert by_default.configuration == saved["id"]


def test_replacing_the_card_in_the_portal_changes_the_default_and_detaches_the_old_one(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="Switcher")
    old = customer.invoice_settings.default_payment_method
    standin.dashboard.save_portal_settings(default_return_url="https://shop.example/billing")
    session = client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    standin.hosted.replace_card(session.id, card="tok_mastercard")
    now = client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method
    assert now not in (None, old)
    assert client.v1.payment_methods.retrieve(str(old)).customer is None
    assert [e["type"] for e in standin.events()][-3:] == [
        "payment_method.attached",
        "customer.updated",
        "payment_method.detached",
    ]
