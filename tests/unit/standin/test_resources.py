"""Each resource through the real SDK: what it creates, how it changes, what it emits."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from webhooks.standin import StandIn
from webhooks.standin.payments import stripe_fee

from .conftest import charge_of, paid_invoice, paying_customer


def event_types(standin: StandIn) -> list[str]:
    return [event["type"] for event in standin.events()]


def test_customer_create_update_delete(standin: StandIn, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "name": "Acme Support Ltd",
            "email": "billing@acme.test",
            "metadata": {"tenant_id": "t-1"},
            "address": {"country": "SG", "city": "Singapore"},
            "preferred_locales": ["en", "zh"],
        }
    )
    assert customer.name == "Acme Support Ltd"
    assert customer.metadata["tenant_id"] == "t-1"
    assert customer.address.city == "Singapore"
    assert customer.balance == 0
    assert customer.created > 0
    updated = client.v1.customers.update(
        customer.id, params={"email": "ap@acme.test", "metadata": {"tenant_id": "", "tier": "gold"}}
    )
    assert updated.email == "ap@acme.test"
    assert updated.metadata.to_dict() == {"tier": "gold"}
    event = standin.events("customer.updated")[0]
    assert event["data"]["previous_attributes"]["email"] == "billing@acme.test"
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(customer.id).deleted is True
    assert event_types(standin) == ["customer.created", "customer.updated", "customer.deleted"]


def test_unknown_ids_are_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.retrieve("in_missing")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": "cus_missing"})
    assert (caught.value.http_status, caught.value.param) == (400, "customer")


def test_unknown_parameter_raises_invalid_request_error(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"nmae": "typo"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "nmae"
    assert caught.value.user_message == "Received unknown parameter: nmae"


def test_product_and_prices_including_archive_and_lookup_keys(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    product = client.v1.products.create(
        params={
            "name": "Pro seat",
            "metadata": {"plan": "pro"},
            "default_price_data": {
                "currency": "usd",
                "unit_amount": 4900,
                "recurring": {"interval": "month"},
            },
        }
    )
    assert product.active is True
    default = client.v1.prices.retrieve(product.default_price)
    assert (default.unit_amount, default.type, default.recurring.interval) == (
        4900,
        "recurring",
        "month",
    )
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount_decimal": "12.5",
            "lookup_key": "pro_overage",
            "nickname": "Overage",
        }
    )
    assert price.unit_amount is None
    assert price.unit_amount_decimal == Decimal("12.5")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1,
                "lookup_key": "pro_overage",
            }
        )
    archived = client.v1.prices.update(price.id, params={"active": False})
    assert archived.active is False
    found = client.v1.prices.list(params={"lookup_keys": ["pro_overage"]})
    assert [p.id for p in found.data] == [price.id]
    assert [p.id for p in client.v1.prices.list(params={"active": True}).data] == [default.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.delete(product.id)
    assert client.v1.products.update(product.id, params={"active": False}).active is False
    assert standin.events("price.updated")[0]["data"]["previous_attributes"] == {"active": True}


def test_invoice_from_draft_to_paid(standin: StandIn, client: stripe.StripeClient) -> None:
    customer = paying_customer(client, name="Kefu Tenant", invoice_prefix="KEFU")
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "auto_advance": False,
            "collection_method": "charge_automatically",
            "currency": "usd",
            "metadata": {"invoice_id": "our-1"},
        }
    )
    assert (invoice.status, invoice.total, invoice.number) == ("draft", 0, None)
    first = client.v1.invoice_items.create(
        params={
            "invoice": invoice.id,
            "amount": 10_000,
            "currency": "usd",
            "description": "Plan fee",
            "metadata": {"line_id": "L1"},
        }
    )
    second = client.v1.invoice_items.create(
        params={
            "invoice": invoice.id,
            "customer": customer.id,
            "unit_amount_decimal": "0.35",
            "quantity": 1234,
            "currency": "usd",
            "description": "Tickets over quota",
        }
    )
    assert first.customer == customer.id
    assert second.amount == 432  # 0.35 x 1234 = 431.9, half-up
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status == "open"
    assert finalized.number == "KEFU-0001"
    assert finalized.hosted_invoice_url.startswith(standin.base_url)
    assert (finalized.subtotal, finalized.total, finalized.amount_due) == (10_432, 10_432, 10_432)
    assert [line.metadata.to_dict().get("line_id") for line in finalized.lines.data] == ["L1", None]
    assert finalized.lines.data[0].parent.invoice_item_details.invoice_item == first.id
    paid = client.v1.invoices.pay(invoice.id, params={"expand": ["payments"]})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 10_432, 0)
    assert paid.status_transitions.paid_at is not None
    charge = charge_of(client, paid)
    assert (charge.amount, charge.status, charge.paid) == (10_432, "succeeded", True)
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (10_432, stripe_fee(10_432), 10_432 - 333)
    assert txn.fee_details[0].type == "stripe_fee"
    assert event_types(standin)[-3:] == [
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(
            params={"invoice": invoice.id, "amount": 1, "currency": "usd"}
        )


def test_fee_rule_is_2_9_percent_plus_30_half_up() -> None:
    assert stripe_fee(10_000) == 320
    assert stripe_fee(50) == 31  # 1.45 -> 1
    assert stripe_fee(1_500) == 74  # 43.5 -> 44


def test_declined_payment_fails_and_a_retry_pays(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="Card Trouble")
    invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": True})
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": 2_000, "currency": "usd"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    standin.dashboard.decline_payments(customer.id)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.code == "card_declined"
    failed = client.v1.invoices.retrieve(invoice.id)
    assert (failed.status, failed.attempt_count, failed.attempted) == ("open", 1, True)
    assert failed.next_payment_attempt is not None
    assert standin.events("invoice.payment_failed")[0]["data"]["object"]["attempt_count"] == 1
    standin.dashboard.decline_payments(customer.id, enabled=False)
    paid = client.v1.invoices.pay(invoice.id)
    assert (paid.status, paid.attempt_count) == ("paid", 2)
    assert [c.status for c in client.v1.charges.list(params={"customer": customer.id}).data] == [
        "succeeded",
        "failed",
    ]


def test_void_and_uncollectible(standin: StandIn, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Gone Co"})
    invoices = []
    for _ in range(2):
        invoice = client.v1.invoices.create(params={"customer": customer.id})
        client.v1.invoice_items.create(
            params={"invoice": invoice.id, "amount": 700, "currency": "usd"}
        )
        invoices.append(client.v1.invoices.finalize_invoice(invoice.id))
    voided = client.v1.invoices.void_invoice(invoices[0].id)
    assert (voided.status, voided.amount_remaining) == ("void", 0)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(voided.id)
    bad_debt = client.v1.invoices.mark_uncollectible(invoices[1].id)
    assert bad_debt.status == "uncollectible"
    assert bad_debt.status_transitions.marked_uncollectible_at is not None
    assert {"invoice.voided", "invoice.marked_uncollectible"} <= set(event_types(standin))


def test_draft_invoice_can_be_edited_and_deleted(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Draft Co"})
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    item = client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": 100, "currency": "usd"}
    )
    client.v1.invoice_items.update(item.id, params={"amount": 250})
    assert client.v1.invoices.retrieve(invoice.id).total == 250
    client.v1.invoice_items.delete(item.id)
    assert client.v1.invoices.retrieve(invoice.id).total == 0
    updated = client.v1.invoices.update(
        invoice.id, params={"description": "March", "metadata": {"k": "v"}}
    )
    assert updated.description == "March"
    assert client.v1.invoices.delete(invoice.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.retrieve(invoice.id)


def test_pending_items_join_an_invoice_that_includes_them(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Pending Co"})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 300, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    assert invoice.total == 300
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True})
    assert pending.data == []


def test_send_invoice_gets_a_due_date(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Net 30"})
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoice_items.create(params={"invoice": invoice.id, "amount": 100, "currency": "usd"})
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.due_date == finalized.status_transitions.finalized_at + 30 * 86400


def test_refunds_partial_then_rest_and_not_more(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    charge = charge_of(client, paid_invoice(client, amount=5_000))
    partial = client.v1.refunds.create(
        params={
            "charge": charge.id,
            "amount": 1_500,
            "reason": "requested_by_customer",
            "metadata": {"cn": "1"},
        }
    )
    assert (partial.status, partial.amount, partial.charge) == ("succeeded", 1_500, charge.id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": charge.payment_intent, "amount": 4_000})
    assert caught.value.code == "amount_too_large"
    rest = client.v1.refunds.create(params={"payment_intent": charge.payment_intent})
    assert rest.amount == 3_500
    refreshed = client.v1.charges.retrieve(charge.id)
    assert (refreshed.amount_refunded, refreshed.refunded) == (5_000, True)
    assert "refunds" not in refreshed  # includable since API 2022-11-15: only when expanded
    with_refunds = client.v1.charges.retrieve(charge.id, params={"expand": ["refunds"]})
    assert len(with_refunds.refunds.data) == 2
    txn = client.v1.balance_transactions.retrieve(partial.balance_transaction)
    assert (txn.type, txn.amount, txn.fee, txn.net) == ("refund", -1_500, 0, -1_500)
    refunded_events = standin.events("charge.refunded")
    assert refunded_events[0]["data"]["previous_attributes"]["amount_refunded"] == 0
    assert len(standin.events("refund.created")) == 2
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge.id})
    assert caught.value.code == "charge_already_refunded"
    assert (
        client.v1.refunds.update(partial.id, params={"metadata": {"cn": "2"}}).metadata["cn"] == "2"
    )


def test_credit_note_before_payment_lowers_what_is_due(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = paying_customer(client, name="SLA Co")
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": 8_000, "currency": "usd"}
    )
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    line = invoice.lines.data[0]
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 800}],
            "reason": "product_unsatisfactory",
            "memo": "SLA credit",
        }
    )
    assert (note.type, note.amount, note.status, note.pre_payment_amount) == (
        "pre_payment",
        800,
        "issued",
        800,
    )
    assert note.lines.data[0].invoice_line_item == line.id
    after = client.v1.invoices.retrieve(invoice.id)
    assert (after.pre_payment_credit_notes_amount, after.amount_due, after.amount_remaining) == (
        800,
        7_200,
        7_200,
    )
    assert client.v1.invoices.pay(invoice.id).amount_paid == 7_200
    voided_attempt = client.v1.credit_notes.list(params={"invoice": invoice.id})
    assert [n.id for n in voided_attempt.data] == [note.id]
    assert standin.events("credit_note.created")[0]["data"]["object"]["id"] == note.id


def test_credit_note_after_payment_refunds_or_credits(client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client, amount=10_000)
    refund_note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 1_000, "refund_amount": 1_000}
    )
    assert refund_note.type == "post_payment"
    assert refund_note.refunds[0].amount_refunded == 1_000
    refund = client.v1.refunds.retrieve(refund_note.refunds[0].refund)
    assert refund.amount == 1_000
    credit_note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 500, "credit_amount": 500}
    )
    assert credit_note.number.endswith("-CN-02")
    assert client.v1.customers.retrieve(invoice.customer).balance == -500
    after = client.v1.invoices.retrieve(invoice.id)
    assert after.post_payment_credit_notes_amount == 1_500
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 9_000})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 100, "refund_amount": 50}
        )
    voided = client.v1.credit_notes.void_credit_note(credit_note.id)
    assert voided.status == "void"
    assert client.v1.customers.retrieve(invoice.customer).balance == 0


def test_customer_credit_pays_down_the_next_invoice(client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client, amount=1_000)
    client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 600, "credit_amount": 600}
    )
    following = client.v1.invoices.create(params={"customer": invoice.customer})
    client.v1.invoice_items.create(
        params={"invoice": following.id, "amount": 400, "currency": "usd"}
    )
    finalized = client.v1.invoices.finalize_invoice(following.id)
    assert (finalized.starting_balance, finalized.ending_balance) == (-600, -200)
    assert (finalized.amount_due, finalized.status) == (0, "paid")


def test_expand_replaces_ids_with_objects(client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client)
    expanded = client.v1.invoices.retrieve(
        invoice.id, params={"expand": ["customer", "payments.data.payment.payment_intent"]}
    )
    assert expanded.customer.name == "Paying Co"
    assert expanded.payments.data[0].payment.payment_intent.status == "succeeded"
    charges = client.v1.charges.list(params={"expand": ["data.balance_transaction"]})
    assert charges.data[0].balance_transaction.net > 0


def test_events_are_listed_and_retrieved_with_the_pinned_api_version(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    paid_invoice(client)
    listed = client.v1.events.list(params={"type": "invoice.*", "limit": 100})
    assert [e.type for e in listed.data] == [
        "invoice.payment_succeeded",
        "invoice.paid",
        "invoice.finalized",
        "invoice.created",
    ]
    event = client.v1.events.retrieve(listed.data[1].id)
    assert event.api_version == stripe._api_version._ApiVersion.CURRENT
    assert isinstance(event.data.object, stripe.Invoice)
    assert event.data.object.status == "paid"
    assert event.request.id.startswith("req_")
