# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Stripe down for a while: every push waits and retries with backoff, nothing is lost, nothing
is made twice in Stripe, and everything goes out once Stripe answers again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.db.tables import CreditNote, Invoice, Refund, StripeOutbox
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import close_pass, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_objects,
    stripe_settings,
    sync,
)
from tests.integration.test_stripe_sync import invoiced_merchant, paid_invoice
from webhooks import outbox
from webhooks.outbox import backoff


async def test_outage_loses_nothing_and_pushes_nothing_twice(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    # Each merchant's customer is in Stripe with a card saved; then its first fee is invoiced.
    tenants = []
    for _ in range(3):
        clock = await new_clock(stripe_client, operator, "2026-03-10T00:00:00+08:00")
        tenant, _ = await signup_tenant(stripe_client, operator, test_clock_id=clock)
        await add_card(sync, tenant.merchant_id)
        tenants.append(tenant)
    for tenant in tenants:
        await close_pass(tenant.merchant_id)
    sync.standin.start_outage(status=503)
    now = datetime.now(UTC)
    for hour in range(4):
        summary = await sync.stripe_sync.run_pass(
            now=now + timedelta(hours=hour), merchant_ids=sync.merchant_ids
        )
        assert summary.outbox.sent == 0
        assert summary.outbox.parked == 0
    rows = await StripeOutbox.objects().where(StripeOutbox.merchant_id.is_in(sync.merchant_ids))
    waiting = [row for row in rows if row.status != "sent"]
    assert {(row.command, row.status) for row in waiting} == {("invoice.push", "pending")}
    assert len(waiting) == 3
    assert all(row.attempts >= 2 and "503" in (row.last_error or "") for row in waiting)
    assert sync.standin.count("invoice") == 0

    # Stripe is back, but flaky: timeouts and 429s on the way, answered by retries.
    sync.standin.end_outage()
    sync.standin.fail_next(2, status="timeout", path_prefix="/v1/invoiceitems")
    sync.standin.fail_next(1, status=429, path_prefix="/v1/invoices")
    await sync.settle(now=now + timedelta(hours=5))

    for tenant in tenants:
        invoice = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id).first()
        assert invoice is not None
        assert invoice.status == "paid"
        assert len(stripe_objects(sync.standin, "invoice", tenant.merchant_id)) == 1
        items = stripe_objects(sync.standin, "invoiceitem", tenant.merchant_id)
        assert sum(item["amount"] for item in items) == invoice.total_minor
    assert sync.standin.count("customer") == 3
    assert sync.standin.count("invoice") == 3
    assert sync.standin.count("charge") == 3
    rows = await StripeOutbox.objects().where(StripeOutbox.merchant_id.is_in(sync.merchant_ids))
    assert {row.status for row in rows} == {"sent"}


async def test_a_request_stripe_refuses_parks_the_row_and_its_stream(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync, with_card=False)
    sync.standin.fail_next(1, status=400, path_prefix="/v1/customers")
    await sync.settle()
    rows = (
        await StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == tenant.merchant_id)
        .order_by(StripeOutbox.id)
    )
    assert [(row.command, row.status) for row in rows] == [
        ("customer.create", "parked"),
        ("invoice.push", "pending"),
    ]
    assert "400" in (rows[0].last_error or "")
    from service import stripe_outbox

    assert await stripe_outbox.requeue(rows[0].id, now=datetime.now(UTC))
    await sync.settle()
    pushed = await Invoice.objects().where(Invoice.id == invoice.id).first()
    # No card saved: the invoice went out as a sent one, with its payment link.
    assert (pushed.collection_method, pushed.status) == ("send_invoice", "open")
    assert pushed.stripe_invoice_id
    assert pushed.hosted_invoice_url


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    waits = [backoff(n, rng=rng).total_seconds() for n in range(1, 14)]
    assert 1 <= waits[0] <= 2
    assert 2 <= waits[1] <= 4
    assert 4 <= waits[2] <= 8
    assert max(waits) <= 900


async def test_a_push_retried_after_stripes_24_hours_makes_nothing_twice(
    stripe_client: httpx.AsyncClient,
    operator: Tenant,
    sync: Sync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idempotency keys make a retry safe only while Stripe keeps them (24 hours). A worker that
    made objects in Stripe and died before recording them, and came back a day later, must find
    them instead of making them again: a second invoice would charge the merchant twice."""
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync, with_card=False)
    now = datetime.now(UTC)
    # The customer is made in Stripe, then recording the row fails: as if the worker died.
    monkeypatch.setattr(outbox, "_MARK_SENT", "SELECT no_such_function()")
    summary = await sync.stripe_sync.run_pass(now=now, merchant_ids=sync.merchant_ids)
    assert summary.outbox.sent == 0
    assert len(stripe_objects(sync.standin, "customer", tenant.merchant_id)) == 1
    monkeypatch.undo()
    sync.standin.forget_idempotency_keys()

    # A day later the customer row goes through; the invoice is made with its items, and its
    # finalization fails: again nothing of the push is recorded on our side.
    sync.standin.fail_next(1, status=500, method="POST", path_prefix="/v1/invoices/")
    await sync.stripe_sync.run_pass(now=now + timedelta(hours=25), merchant_ids=sync.merchant_ids)
    unrecorded = await Invoice.objects().where(Invoice.id == invoice.id).first()
    assert unrecorded is not None
    assert unrecorded.stripe_invoice_id is None
    (draft,) = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert draft["status"] == "draft"
    items_made = len(stripe_objects(sync.standin, "invoiceitem", tenant.merchant_id))
    assert items_made > 0
    sync.standin.forget_idempotency_keys()

    await sync.settle(now=now + timedelta(hours=50))
    assert len(stripe_objects(sync.standin, "customer", tenant.merchant_id)) == 1
    (pushed,) = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    # No card saved: sent, not charged (the merchant pays on its hosted page).
    assert (pushed["id"], pushed["status"]) == (draft["id"], "open")
    assert pushed["collection_method"] == "send_invoice"
    items = stripe_objects(sync.standin, "invoiceitem", tenant.merchant_id)
    assert len(items) == items_made
    assert sum(item["amount"] for item in items) == invoice.total_minor
    sent = await Invoice.objects().where(Invoice.id == invoice.id).first()
    assert sent is not None
    assert (sent.stripe_invoice_id, sent.collection_method) == (draft["id"], "send_invoice")


async def test_a_refund_retried_after_stripes_24_hours_refunds_once(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 1000, "reason": "sla_credit", "memo": "outage"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    # Stripe makes the credit note and its refund, and the answer is lost on the way back: the
    # push records nothing.
    sync.standin.fail_next(1, status="lost", method="POST", path_prefix="/v1/credit_notes")
    now = datetime.now(UTC)
    await sync.stripe_sync.run_pass(now=now, merchant_ids=sync.merchant_ids)
    assert len(stripe_objects(sync.standin, "credit_note", tenant.merchant_id)) == 1
    assert len([r for r in sync.standin.objects("refund") if r["amount"] == 1000]) == 1
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert note.stripe_credit_note_id is None
    sync.standin.forget_idempotency_keys()

    # A day later the same row finds what it made instead of refunding again.
    await sync.settle(now=now + timedelta(hours=25))
    [refund] = sync.standin.objects("refund")
    assert refund["amount"] == 1000
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert stripe_note["refunds"][0]["refund"] == refund["id"]
    [ours] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert (ours.stripe_refund_id, ours.amount_minor) == (refund["id"], 1000)
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert (note.stripe_refund_id, note.stripe_credit_note_id) == (refund["id"], stripe_note["id"])
