"""Stripe-style lists: newest first, limit, cursors, has_more, auto-paging through the SDK."""

from __future__ import annotations

import httpx
import pytest
import stripe

from webhooks.standin import StandIn
from webhooks.standin.payments import stripe_fee

from .conftest import charge_of, paid_invoice


def test_list_shape_and_cursor_paging(standin: StandIn, client: stripe.StripeClient) -> None:
    created = [client.v1.customers.create(params={"name": f"c{n}"}).id for n in range(25)]
    newest_first = created[::-1]
    with httpx.Client(base_url=standin.base_url, trust_env=False) as http:
        body = http.get(
            "/v1/customers", params={"limit": 10}, headers={"Authorization": "Bearer sk_test_x"}
        ).json()
    assert (body["object"], body["url"], body["has_more"]) == ("list", "/v1/customers", True)
    assert [c["id"] for c in body["data"]] == newest_first[:10]
    page = client.v1.customers.list(params={"limit": 10, "starting_after": newest_first[19]})
    assert ([c.id for c in page.data], page.has_more) == (newest_first[20:], False)
    before = client.v1.customers.list(params={"limit": 3, "ending_before": newest_first[5]})
    assert [c.id for c in before.data] == newest_first[2:5]
    assert before.has_more is True


def test_auto_paging_iter_walks_every_page(client: stripe.StripeClient) -> None:
    created = [client.v1.customers.create(params={"name": f"c{n}"}).id for n in range(23)]
    walked = [c.id for c in client.v1.customers.list(params={"limit": 5}).auto_paging_iter()]
    assert walked == created[::-1]


def test_limit_out_of_range_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.list(params={"limit": 101})
    assert caught.value.param == "limit"


def test_unknown_cursor_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list(params={"starting_after": "cus_nope"})


def test_reconciliation_lists_page_through_everything(client: stripe.StripeClient) -> None:
    invoices = [paid_invoice(client, amount=1_000 + n) for n in range(4)]
    for invoice in invoices:
        charge = charge_of(client, invoice)
        client.v1.refunds.create(params={"charge": charge.id, "amount": 100})
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 50, "credit_amount": 50}
        )

    def walk(listing: stripe.ListObject) -> list:
        return list(listing.auto_paging_iter())

    assert len(walk(client.v1.invoices.list(params={"limit": 3}))) == 4
    assert len(walk(client.v1.charges.list(params={"limit": 3}))) == 4
    assert len(walk(client.v1.refunds.list(params={"limit": 3}))) == 4
    assert len(walk(client.v1.credit_notes.list(params={"limit": 3}))) == 4
    transactions = walk(client.v1.balance_transactions.list(params={"limit": 3}))
    assert sorted(t.type for t in transactions) == ["charge"] * 4 + ["refund"] * 4
    assert sum(t.net for t in transactions) == sum(
        1_000 + n - stripe_fee(1_000 + n) - 100 for n in range(4)
    )
    refunds_only = client.v1.balance_transactions.list(params={"type": "refund"})
    assert {t.amount for t in refunds_only.data} == {-100}
    events = walk(client.v1.events.list(params={"limit": 7}))
    assert len(events) == len({e.id for e in events}) > 40
    created_after = client.v1.events.list(params={"created": {"gte": events[-1].created}})
    assert created_after.data


def test_lists_filter_by_customer_and_status(client: stripe.StripeClient) -> None:
    paid = paid_invoice(client)
    customer = client.v1.customers.create(params={"name": "Other"})
    client.v1.invoices.create(params={"customer": customer.id})
    assert [i.id for i in client.v1.invoices.list(params={"status": "paid"}).data] == [paid.id]
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    assert client.v1.charges.list(params={"customer": customer.id}).data == []
