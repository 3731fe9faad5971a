"""Every field the SDK's resource classes declare is present in what the stand-in answers, but
for the includable ones: those only when expanded, as at Stripe."""

from __future__ import annotations

import typing
from typing import Any

import httpx
import pytest
import stripe
from stripe import StripeObject

from webhooks.standin import StandIn, expansion, objects, sdk_types

from .conftest import charge_of, paid_invoice


def missing_fields(cls: type, obj: dict[str, Any], path: str = "") -> list[str]:
    """Fields of ``cls`` absent from ``obj``, recursing into the nested objects that are set
    (includable fields of a resource are left out of answers unless expanded: not missing)."""
    missing = []
    left_out = expansion.includable().get(getattr(cls, "OBJECT_NAME", None) or "", frozenset())
    for name, tp in sdk_types.fields(cls).items():
        where = f"{path}.{name}" if path else name
        if name not in obj and name in left_out:
            continue
        if name not in obj:
            missing.append(where)
            continue
        value = obj[name]
        nested = [tp, *typing.get_args(tp)]
        for candidate in nested:
            if (
                isinstance(value, dict)
                and isinstance(candidate, type)
                and issubclass(candidate, StripeObject)
                and not getattr(candidate, "OBJECT_NAME", None)
                and candidate.__name__ != "UntypedStripeObject"
            ):
                missing += missing_fields(candidate, value, where)
    return missing


@pytest.fixture
def raw(standin: StandIn) -> httpx.Client:
    """Plain HTTP to the stand-in, to see the JSON exactly as sent."""
    with httpx.Client(
        base_url=standin.base_url, headers={"Authorization": "Bearer sk_test_x"}, trust_env=False
    ) as http:
        yield http


@pytest.mark.parametrize("object_name", sorted(objects.ID_PREFIXES))
def test_built_objects_have_exactly_the_sdk_fields(object_name: str) -> None:
    cls = objects.resource_class(object_name)
    built = objects.build(object_name)
    assert set(built) == set(sdk_types.fields(cls))
    assert [name for name in built if name not in {*sdk_types.fields(cls)}] == []


def test_every_answered_object_carries_every_sdk_field(
    standin: StandIn, client: stripe.StripeClient, raw: httpx.Client
) -> None:
    invoice = paid_invoice(client, amount=5_000)
    charge = charge_of(client, invoice)
    product = client.v1.products.create(params={"name": "Seat"})
    price = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 900}
    )
    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 100})
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 200})
    dispute = standin.dashboard.open_dispute(charge.id, amount=300)
    item = standin.objects("invoiceitem")[0]
    paths = {
        stripe.Invoice: f"/v1/invoices/{invoice.id}",
        stripe.Customer: f"/v1/customers/{invoice.customer}",
        stripe.Refund: f"/v1/refunds/{refund.id}",
        stripe.Charge: f"/v1/charges/{charge.id}",
        stripe.CreditNote: f"/v1/credit_notes/{note.id}",
        stripe.Price: f"/v1/prices/{price.id}",
        stripe.Product: f"/v1/products/{product.id}",
        stripe.BalanceTransaction: f"/v1/balance_transactions/{charge.balance_transaction}",
        stripe.PaymentIntent: f"/v1/payment_intents/{charge.payment_intent}",
        stripe.InvoiceItem: f"/v1/invoiceitems/{item['id']}",
        stripe.InvoicePayment: f"/v1/invoice_payments/{invoice.payments.data[0].id}",
        stripe.Dispute: f"/v1/disputes/{dispute['id']}",
        stripe.Event: f"/v1/events/{standin.events('invoice.paid')[0]['id']}",
    }
    for cls, path in paths.items():
        body = raw.get(path).json()
        assert body["object"] == cls.OBJECT_NAME, path
        assert missing_fields(cls, body) == [], cls.__name__
        assert body.get("livemode", False) is False
        for name in expansion.includable().get(cls.OBJECT_NAME, ()):
            assert name not in body, f"{cls.__name__}.{name} is includable: only when expanded"
    lines = raw.get(f"/v1/invoices/{invoice.id}").json()["lines"]["data"]
    assert missing_fields(stripe.InvoiceLineItem, lines[0]) == []
    note_lines = raw.get(f"/v1/credit_notes/{note.id}/lines").json()["data"]
    assert missing_fields(stripe.CreditNoteLineItem, note_lines[0]) == []


def test_event_snapshots_carry_every_field_of_their_object(standin: StandIn) -> None:
    client = standin.sdk_client()
    paid_invoice(client)
    for event in standin.events():
        snapshot = event["data"]["object"]
        cls = objects.resource_class(snapshot["object"])
        assert missing_fields(cls, snapshot) == [], event["type"]
        # An event cannot be expanded: no includable field in any payload.
        assert not set(snapshot) & expansion.includable().get(snapshot["object"], set())


def test_every_emitted_event_type_is_one_the_sdk_knows(standin: StandIn) -> None:
    client = standin.sdk_client()
    invoice = paid_invoice(client)
    charge = charge_of(client, invoice)
    client.v1.refunds.create(params={"charge": charge.id, "amount": 10})
    dispute = standin.dashboard.open_dispute(charge.id, amount=10)
    standin.dashboard.close_dispute(dispute["id"], won=True)
    known = set(typing.get_args(sdk_types.fields(stripe.Event)["type"]))
    emitted = {event["type"] for event in standin.events()}
    assert emitted <= known
    assert {"invoice.paid", "charge.refunded", "charge.dispute.closed"} <= emitted


def test_ids_carry_stripe_prefixes(standin: StandIn, client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client)
    charge = charge_of(client, invoice)
    assert invoice.id.startswith("in_")
    assert invoice.customer.startswith("cus_")
    assert charge.id.startswith("ch_")
    assert charge.payment_intent.startswith("pi_")
    assert charge.balance_transaction.startswith("txn_")
    assert all(e["id"].startswith("evt_") for e in standin.events())
