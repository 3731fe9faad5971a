"""Dashboard actions (as a person in Stripe's dashboard would) and the HTTP control routes."""

from __future__ import annotations

import httpx
import pytest
import stripe

from webhooks.standin import StandIn
from webhooks.standin.disputes import DISPUTE_FEE_MINOR
from webhooks.standin.schema import StripeError

from .conftest import charge_of, paid_invoice, paying_customer


def test_dashboard_refund_emits_refund_and_charge_events_without_a_request(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    charge = charge_of(client, paid_invoice(client, amount=3_000))
    refund = standin.dashboard.refund_charge(
        charge.id, amount=1_000, reason="requested_by_customer"
    )
    assert client.v1.refunds.retrieve(refund["id"]).amount == 1_000
    created = standin.events("refund.created")[-1]
    assert created["request"] == {"id": None, "idempotency_key": None}
    refunded = standin.events("charge.refunded")[-1]
    assert refunded["data"]["object"]["amount_refunded"] == 1_000
    failed = standin.dashboard.fail_refund(refund["id"])
    assert failed["status"] == "failed"
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 0
    assert (
        standin.events("refund.updated")[-1]["data"]["previous_attributes"]["status"] == "succeeded"
    )


def test_dispute_opened_and_won_moves_the_balance(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    charge = charge_of(client, paid_invoice(client, amount=4_000))
    dispute = standin.dashboard.open_dispute(charge.id, reason="product_not_received")
    assert (dispute["status"], dispute["amount"]) == ("needs_response", 4_000)
    assert client.v1.charges.retrieve(charge.id).disputed is True
    debit = dispute["balance_transactions"][0]
    assert (debit["amount"], debit["fee"], debit["net"]) == (-4_000, DISPUTE_FEE_MINOR, -5_500)
    closed = standin.dashboard.close_dispute(dispute["id"], won=True)
    assert closed["status"] == "won"
    assert client.v1.disputes.retrieve(dispute["id"]).balance_transactions[1].net == 5_500
    assert [e["type"] for e in standin.events() if "dispute" in e["type"]] == [
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ]


def test_accepting_a_dispute_through_the_api_loses_it(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    charge = charge_of(client, paid_invoice(client))
    dispute = standin.dashboard.open_dispute(charge.id)
    assert client.v1.disputes.close(dispute["id"]).status == "lost"


def test_changing_a_price_archives_it_and_moves_key_and_default(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    product = client.v1.products.create(
        params={"name": "Basic", "default_price_data": {"currency": "usd", "unit_amount": 1_000}}
    )
    old = client.v1.prices.update(product.default_price, params={"lookup_key": "basic_monthly"})
    new = standin.dashboard.change_price_amount(old.id, 1_200)
    assert new["unit_amount"] == 1_200
    assert new["lookup_key"] == "basic_monthly"
    refreshed_old = client.v1.prices.retrieve(old.id)
    assert (refreshed_old.active, refreshed_old.lookup_key) == (False, None)
    assert client.v1.products.retrieve(product.id).default_price == new["id"]
    assert standin.dashboard.archive_product(product.id)["active"] is False
    assert "product.updated" in {e["type"] for e in standin.events()}


def test_mark_paid_outside_stripe_pays_without_a_charge(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Wire Transfer"})
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(params={"invoice": invoice.id, "amount": 900, "currency": "usd"})
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = standin.dashboard.mark_invoice_paid(invoice.id)
    assert (paid["status"], paid["amount_paid"], paid["amount_paid_off_stripe"]) == (
        "paid",
        900,
        900,
    )
    assert standin.count("charge") == 0
    assert standin.events("invoice.paid")[0]["request"]["id"] is None


def test_collection_fails_then_succeeds(standin: StandIn, client: stripe.StripeClient) -> None:
    customer = paying_customer(client, name="Dunning")
    invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": True})
    client.v1.invoice_items.create(params={"invoice": invoice.id, "amount": 500, "currency": "usd"})
    client.v1.invoices.finalize_invoice(invoice.id)
    failed = standin.dashboard.fail_invoice_payment(invoice.id)
    assert (failed["status"], failed["attempt_count"]) == ("open", 1)
    standin.dashboard.decline_next_payments(1)
    assert standin.dashboard.collect_invoice(invoice.id)["attempt_count"] == 2
    paid = standin.dashboard.collect_invoice(invoice.id)
    assert (paid["status"], paid["attempt_count"]) == ("paid", 3)
    assert len(standin.events("invoice.payment_failed")) == 2


def test_dashboard_customer_changes_emit_events(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"name": "Renamed"})
    standin.dashboard.update_customer(customer.id, email="new@renamed.test")
    standin.dashboard.delete_customer(customer.id)
    assert [e["type"] for e in standin.events()] == [
        "customer.created",
        "customer.updated",
        "customer.deleted",
    ]
    assert standin.events("customer.deleted")[0]["data"]["object"]["email"] == "new@renamed.test"


def test_dashboard_errors_are_stripe_errors(standin: StandIn, client: stripe.StripeClient) -> None:
    invoice = paid_invoice(client)
    with pytest.raises(StripeError, match="void") as caught:
        standin.dashboard.void_invoice(invoice.id)
    assert caught.value.status == 400


@pytest.fixture
def control(standin: StandIn) -> httpx.Client:
    with httpx.Client(base_url=f"{standin.base_url}/_standin", trust_env=False) as http:
        yield http


def test_http_control_routes(
    standin: StandIn, client: stripe.StripeClient, control: httpx.Client
) -> None:
    assert control.get("/health").json()["ok"] is True
    invoice = paid_invoice(client, amount=2_000)
    charge = charge_of(client, invoice)
    refund = control.post("/dashboard/refund_charge", json={"charge_id": charge.id, "amount": 500})
    assert refund.json()["amount"] == 500
    assert control.get("/counts").json()["refund"] == 1
    assert control.get("/objects/refund").json()[0]["id"] == refund.json()["id"]
    assert control.post("/dashboard/no_such_action", json={}).status_code == 404
    assert control.post("/dashboard/refund_charge", json={"charge_id": "ch_x"}).status_code == 404
    control.post("/faults", json={"count": 1, "status": 429})
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    control.post("/outage", json={"status": 503})
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    control.delete("/outage")
    client.v1.customers.list()
    hosted = control.get(f"/hosted/{invoice.id}")
    assert hosted.headers["content-type"].startswith("text/html")
    assert invoice.number in hosted.text
    webhooks = control.get("/webhooks").json()
    assert webhooks["url"] is None
    assert len(webhooks["undelivered"]) == len(standin.events())
    control.post("/clock", json={"now": 1_900_000_000})
    assert client.v1.customers.create(params={"name": "Future"}).created == 1_900_000_000
