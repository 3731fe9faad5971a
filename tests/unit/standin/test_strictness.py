"""The stand-in refuses what Stripe refuses: object states a call may act on, amount limits,
currency rules, and only the error codes Stripe has."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import stripe

from webhooks import standin as standin_package
from webhooks.standin import StandIn
from webhooks.standin.payments import MAX_AMOUNT_MINOR

from .conftest import charge_of, paid_invoice, paying_customer


def _stripe_error_codes() -> set[str]:
    """Every error ``code`` the pinned SDK knows Stripe to send."""
    annotation = stripe.Invoice.LastFinalizationError.__annotations__["code"]
    return {
        value
        for arg in typing.get_args(annotation)
        if typing.get_origin(arg) is typing.Literal
        for value in typing.get_args(arg)
    }


def test_every_error_code_the_stand_in_sends_is_one_stripe_has() -> None:
    """A code Stripe never sends would let our code depend on it (paying a paid invoice gets
    a plain 400 at Stripe, no ``invoice_already_paid``)."""
    sent = set()
    for source in Path(standin_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            is_code = isinstance(node, ast.keyword) and node.arg == "code"
            if (
                is_code
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                sent.add(node.value.value)
    assert sent, "no codes found: the scan is broken"
    assert sent <= _stripe_error_codes(), sorted(sent - _stripe_error_codes())


def _open_invoice(client: stripe.StripeClient, amount: int = 5_000) -> stripe.Invoice:
    customer = paying_customer(client, name="Strict Co")
    invoice = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    client.v1.invoice_items.create(
        params={"invoice": invoice.id, "amount": amount, "currency": "usd"}
    )
    return client.v1.invoices.finalize_invoice(invoice.id)


def test_a_paid_invoice_cannot_be_paid_again_and_stripe_gives_no_code(
    client: stripe.StripeClient,
) -> None:
    invoice = paid_invoice(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.user_message == "Invoice is already paid."
    assert caught.value.code is None


@pytest.mark.parametrize("state", ["draft", "void"])
def test_only_an_open_invoice_is_paid(client: stripe.StripeClient, state: str) -> None:
    if state == "draft":
        customer = client.v1.customers.create(params={"name": "Draft Co"})
        invoice = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    else:
        invoice = client.v1.invoices.void_invoice(_open_invoice(client).id)
    with pytest.raises(stripe.InvalidRequestError, match=f"status {state}"):
        client.v1.invoices.pay(invoice.id)


def test_a_finalized_invoice_is_not_finalized_again(client: stripe.StripeClient) -> None:
    invoice = _open_invoice(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert caught.value.code == "invoice_not_editable"


def test_a_draft_takes_no_credit_note(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Draft Co"})
    draft = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError, match="open or paid"):
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 100})


def test_a_charged_back_charge_is_not_refunded_until_the_dispute_is_won(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    charge = charge_of(client, paid_invoice(client))
    dispute = standin.dashboard.open_dispute(charge.id, amount=1_000)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 100})
    assert caught.value.code == "charge_disputed"
    standin.dashboard.close_dispute(dispute["id"], won=True)
    assert client.v1.refunds.create(params={"charge": charge.id, "amount": 100}).amount == 100


def test_a_credit_note_links_only_refunds_of_its_invoice_and_no_more_than_they_are(
    client: stripe.StripeClient,
) -> None:
    first, second = paid_invoice(client), paid_invoice(client)
    refund = client.v1.refunds.create(
        params={"charge": charge_of(client, first).id, "amount": 1_000}
    )
    with pytest.raises(stripe.InvalidRequestError, match="not a refund of this invoice"):
        client.v1.credit_notes.create(
            params={
                "invoice": second.id,
                "amount": 1_000,
                "refunds": [{"refund": refund.id, "amount_refunded": 1_000}],
            }
        )
    linked = client.v1.credit_notes.create(
        params={
            "invoice": first.id,
            "amount": 600,
            "refunds": [{"refund": refund.id, "amount_refunded": 600}],
        }
    )
    assert linked.refunds[0].refund == refund.id
    with pytest.raises(stripe.InvalidRequestError, match="what is left of refund"):
        client.v1.credit_notes.create(
            params={
                "invoice": first.id,
                "amount": 600,
                "refunds": [{"refund": refund.id, "amount_refunded": 600}],
            }
        )


def test_a_charge_above_eight_digits_is_refused_and_the_invoice_stays_open(
    standin: StandIn, client: stripe.StripeClient
) -> None:
    invoice = _open_invoice(client, amount=MAX_AMOUNT_MINOR + 1)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.pay(invoice.id)
    assert caught.value.code == "amount_too_large"
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    assert standin.count("charge") == 0


def test_a_currency_is_a_three_letter_code_kept_in_lower_case(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Money Co"})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid currency"):
        client.v1.invoices.create(params={"customer": customer.id, "currency": "yuan"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "currency": "CNY"})
    assert invoice.currency == "cny"


def test_a_customer_balance_applies_only_to_invoices_in_its_currency(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"name": "Two Currencies", "balance": -500})
    usd = client.v1.invoices.create(params={"customer": customer.id, "currency": "usd"})
    client.v1.invoice_items.create(params={"invoice": usd.id, "amount": 300, "currency": "usd"})
    assert client.v1.invoices.finalize_invoice(usd.id).amount_due == 0  # 300 of the credit
    eur = client.v1.invoices.create(params={"customer": customer.id, "currency": "eur"})
    client.v1.invoice_items.create(params={"invoice": eur.id, "amount": 300, "currency": "eur"})
    assert client.v1.invoices.finalize_invoice(eur.id).amount_due == 300
    assert client.v1.customers.retrieve(customer.id).balance == -200
