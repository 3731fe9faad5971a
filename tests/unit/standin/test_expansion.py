"""Includable fields (derived from the SDK) and ``expand[]`` as Stripe does them."""

from __future__ import annotations

import typing

import httpx
import pytest
import stripe

from webhooks.standin import StandIn, expansion

from .conftest import paid_invoice


def test_the_sdk_marks_these_fields_includable() -> None:
    """Read from the SDK's resource docstrings: a newer SDK that marks more shows up here."""
    assert expansion.sdk_includable() == {
        ("invoice", "payments"),
        ("checkout.session", "line_items"),
        ("payment_link", "line_items"),
        ("quote", "line_items"),
        ("quote", "computed.upfront.line_items"),
    }


@pytest.mark.parametrize(
    ("owner", "path"),
    sorted(expansion.sdk_includable() | expansion.DOCUMENTED_INCLUDABLE.keys()),
)
def test_every_includable_field_is_an_optional_list_of_its_sdk_class(owner: str, path: str) -> None:
    tp = expansion.field_type(owner, path)
    assert tp is not None, f"{owner}.{path} is not a field of the SDK's class"
    assert type(None) in typing.get_args(tp), f"{owner}.{path} is always present, not includable"
    lists = [a for a in typing.get_args(tp) if typing.get_origin(a) is stripe.ListObject]
    assert lists, f"{owner}.{path} is not a list"


def test_the_noun_of_a_docstring_names_an_sdk_object() -> None:
    assert expansion._object_name_for("Checkout Session") == "checkout.session"
    assert expansion._object_name_for("payment link") == "payment_link"
    assert expansion._object_name_for("unicorn") is None


@pytest.fixture
def raw(standin: StandIn) -> httpx.Client:
    with httpx.Client(
        base_url=standin.base_url, headers={"Authorization": "Bearer sk_test_x"}, trust_env=False
    ) as http:
        yield http


def test_invoice_payments_come_only_when_expanded(
    client: stripe.StripeClient, raw: httpx.Client
) -> None:
    invoice = paid_invoice(client)
    plain = raw.get(f"/v1/invoices/{invoice.id}").json()
    assert plain["status"] == "paid"
    assert "payments" not in plain
    expanded = raw.get(f"/v1/invoices/{invoice.id}", params={"expand[]": "payments"}).json()
    assert expanded["payments"]["data"][0]["status"] == "paid"
    listed = raw.get("/v1/invoices", params={"expand[]": "data.payments"}).json()
    assert listed["data"][0]["payments"]["data"][0]["invoice"] == invoice.id
    assert "payments" not in raw.get("/v1/invoices").json()["data"][0]


def test_an_expanded_object_leaves_out_its_own_includable_fields(
    client: stripe.StripeClient, raw: httpx.Client
) -> None:
    invoice = paid_invoice(client)
    payment_id = invoice.payments.data[0].id
    path = f"/v1/invoice_payments/{payment_id}"
    bare = raw.get(path, params={"expand[]": "invoice"}).json()
    assert bare["invoice"]["id"] == invoice.id
    assert "payments" not in bare["invoice"]
    full = raw.get(path, params={"expand[]": "invoice.payments"}).json()
    assert full["invoice"]["payments"]["data"][0]["id"] == payment_id


def test_nested_paths_expand_ids_through_lists_and_hashes(client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client)
    expanded = client.v1.invoices.retrieve(
        invoice.id, params={"expand": ["payments.data.payment.payment_intent"]}
    )
    intent = expanded.payments.data[0].payment.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.latest_charge.startswith("ch_")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("metadata", "This property cannot be expanded (metadata)."),
        ("lines", "This property cannot be expanded (lines)."),
        ("no_such_field", "This property cannot be expanded (no_such_field)."),
        (
            "payments.payment",
            "This property cannot be expanded (payment). You may want to try "
            "expanding 'data.payment' instead.",
        ),
        ("payments.data.payment.payment_intent.customer.x", "more than 4 levels"),
    ],
)
def test_expansions_stripe_refuses_are_refused(
    client: stripe.StripeClient, path: str, message: str
) -> None:
    invoice = paid_invoice(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.retrieve(invoice.id, params={"expand": [path]})
    assert message in str(caught.value.user_message)
    assert caught.value.http_status == 400


def test_a_list_expands_from_data(client: stripe.StripeClient) -> None:
    paid_invoice(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.list(params={"expand": ["customer"]})
    assert "You may want to try expanding 'data.customer' instead." in str(caught.value)
    listed = client.v1.invoices.list(params={"expand": ["data.customer"]})
    assert listed.data[0].customer.name == "Paying Co"


def test_a_refused_expansion_changes_nothing(standin: StandIn, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Careful Co"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(
            params={"customer": customer.id, "currency": "usd", "expand": ["metadata"]}
        )
    assert standin.count("invoice") == 0
