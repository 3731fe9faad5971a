# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""The Stripe sync through the stand-in: invoices pushed and paid, dunning, refunds both ways,
disputes, dashboard edits of the catalog and customers."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from uuid import UUID

import httpx

from service.db.tables import (
    CreditNote,
    Dispute,
    Invoice,
    Merchant,
    Payment,
    Refund,
    StripeOutbox,
    Subscription,
)
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
    stripe_refunds,
    stripe_settings,
    sync,
)

START = "2026-03-10T00:00:00+08:00"


async def invoiced_merchant(
    client: httpx.AsyncClient,
    operator: Tenant,
    sync: Sync,
    *,
    plan: str = "basic",
    with_card: bool = True,
) -> tuple[Tenant, Invoice]:
    """A merchant signed up on a test clock whose first fee is invoiced at once; with a card
    saved for its invoices (so Stripe charges them) unless ``with_card`` is false."""
    clock = await new_clock(client, operator, START)
    tenant, _ = await signup_tenant(client, operator, plan=plan, test_clock_id=clock)
    sync.merchant_ids.append(tenant.merchant_id)
    if with_card:
        await add_card(sync, tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    invoice = await _only_invoice(tenant.merchant_id)
    return tenant, invoice


async def _only_invoice(merchant_id: UUID) -> Invoice:
    rows = await Invoice.objects().where(Invoice.merchant_id == merchant_id)
    assert len(rows) == 1, rows
    return rows[0]


async def _refresh(invoice: Invoice) -> Invoice:
    row = await Invoice.objects().where(Invoice.id == invoice.id).first()
    assert row is not None
    return row


async def _sub_status(merchant_id: UUID) -> str:
    row = await Subscription.objects().where(Subscription.merchant_id == merchant_id).first()
    assert row is not None
    return row.status


async def test_invoice_is_pushed_and_paid_by_webhook(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    assert invoice.status == "open"
    assert invoice.total_minor > 0
    total = invoice.total_minor
    await sync.settle()

    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.stripe_customer_id
    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert stripe_invoice["status"] == "paid"
    assert stripe_invoice["total"] == total
    assert stripe_invoice["customer"] == merchant.stripe_customer_id
    items = stripe_objects(sync.standin, "invoiceitem", tenant.merchant_id)
    assert sum(item["amount"] for item in items) == total
    assert all(item["metadata"]["kefu_line_id"] for item in items)

    paid = await _refresh(invoice)
    assert paid.status == "paid"
    assert paid.amount_paid_minor == total
    assert paid.stripe_invoice_id == stripe_invoice["id"]
    assert paid.stripe_number == stripe_invoice["number"]
    assert paid.hosted_invoice_url
    [payment] = await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)
    assert payment.amount_minor == total
    # invoice.paid carries no payments (includable): the outbox asked Stripe which intent and
    # charge paid it.
    [intent] = sync.standin.objects("payment_intent")
    assert payment.stripe_payment_intent_id == intent["id"]
    assert payment.stripe_charge_id == intent["latest_charge"]
    pushed = await (
        StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == tenant.merchant_id)
        .order_by(StripeOutbox.id)
    )
    assert {row.status for row in pushed} == {"sent"}
    assert [row.command for row in pushed] == ["customer.create", "invoice.push", "payment.lookup"]


async def test_payment_failed_then_retried_and_paid(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    from datetime import UTC, datetime, timedelta

    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(1)
    now = datetime.now(UTC)
    await sync.settle(now=now)
    failed = await _refresh(invoice)
    assert (failed.status, failed.payment_attempts) == ("open", 1)
    assert failed.next_payment_retry_at is not None
    assert await _sub_status(tenant.merchant_id) == "past_due"

    # Three days later dunning asks Stripe again; this time the card goes through.
    await sync.settle(now=failed.next_payment_retry_at + timedelta(minutes=1))
    paid = await _refresh(invoice)
    assert paid.status == "paid"
    assert paid.amount_paid_minor == paid.total_minor
    assert await _sub_status(tenant.merchant_id) == "active"
    assert len(await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)) == 1
    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert (stripe_invoice["status"], stripe_invoice["attempt_count"]) == ("paid", 2)
    # A late copy of the first failure changes nothing now.
    [failure] = sync.standin.events("invoice.payment_failed")
    sync.standin.webhooks.resend(failure["id"])
    await sync.settle(now=now + timedelta(days=4))
    assert (await _refresh(invoice)).status == "paid"
    assert await _sub_status(tenant.merchant_id) == "active"


async def test_every_failed_retry_ends_in_suspension(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    from datetime import timedelta

    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(10)
    await sync.settle()
    for _ in range(3):
        row = await _refresh(invoice)
        assert row.next_payment_retry_at is not None
        await sync.settle(now=row.next_payment_retry_at + timedelta(minutes=1))
    row = await _refresh(invoice)
    assert (row.status, row.payment_attempts, row.next_payment_retry_at) == ("open", 4, None)
    assert await _sub_status(tenant.merchant_id) == "suspended"


async def paid_invoice(
    client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> tuple[Tenant, Invoice]:
    tenant, invoice = await invoiced_merchant(client, operator, sync)
    await sync.settle()
    invoice = await _refresh(invoice)
    assert invoice.status == "paid"
    return tenant, invoice


async def test_credit_note_on_a_paid_invoice_is_refunded_once(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 1000, "reason": "sla_credit", "memo": "outage"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    await sync.settle()

    [refund] = stripe_refunds(sync.standin, tenant.merchant_id)
    assert refund["amount"] == 1000
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert stripe_note["refunds"][0]["refund"] == refund["id"]
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert (note.refund_status, note.stripe_refund_id) == ("refunded", refund["id"])
    assert note.stripe_credit_note_id == stripe_note["id"]
    # refund.created and charge.refunded both came back: matched, not doubled.
    [ours] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert (ours.origin, ours.amount_minor, ours.credit_note_id) == ("credit_note", 1000, note.id)

    # The card network bounces it later: the refund and the credit note say so.
    sync.standin.dashboard.fail_refund(refund["id"])
    await sync.settle()
    [ours] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert (ours.status, note.refund_status) == ("failed", "failed")


async def test_credit_note_issued_before_the_push_lowers_what_stripe_collects(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    response = await stripe_client.post(  # Stripe has not heard of the invoice yet
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 1000, "reason": "sla_credit", "memo": "outage"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    await sync.settle()

    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert stripe_invoice["status"] == "paid"
    assert stripe_invoice["amount_paid"] == invoice.total_minor - 1000  # charged net, once
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert (stripe_note["type"], stripe_note["amount"]) == ("pre_payment", 1000)
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert note.stripe_credit_note_id == stripe_note["id"]
    assert await Refund.objects().where(Refund.merchant_id == tenant.merchant_id) == []
    paid = await _refresh(invoice)
    assert (paid.status, paid.amount_paid_minor) == ("paid", invoice.total_minor - 1000)


async def test_an_invoice_credited_in_full_before_the_push_charges_nothing(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": invoice.total_minor, "reason": "goodwill", "memo": "on us"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    await sync.settle()
    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert (stripe_invoice["status"], stripe_invoice["amount_paid"]) == ("paid", 0)
    assert len(stripe_objects(sync.standin, "credit_note", tenant.merchant_id)) == 1
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []
    assert (await _refresh(invoice)).status == "paid"
    assert await Payment.objects().where(Payment.merchant_id == tenant.merchant_id) == []


async def test_refund_made_in_the_dashboard_becomes_a_credit_note(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    [payment] = await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)
    intent = sync.standin.sdk_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    sync.standin.dashboard.refund_charge(intent.latest_charge, amount=2000)
    await sync.settle()

    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert (note.reason, note.amount_minor, note.refund_status) == (
        "stripe_refund",
        2000,
        "refunded",
    )
    [refund] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert (refund.origin, refund.credit_note_id) == ("stripe_dashboard", note.id)
    assert (await _refresh(invoice)).amount_credited_minor == 2000
    # Nothing is pushed back to Stripe for it: the dashboard's refund stays the only one.
    assert len(stripe_refunds(sync.standin, tenant.merchant_id)) == 1
    assert sync.standin.count("refund") == 1
    assert sync.standin.count("credit_note") == 0


async def test_dispute_flags_invoice_and_merchant_until_closed(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    [payment] = await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)
    intent = sync.standin.sdk_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    dispute = sync.standin.dashboard.open_dispute(intent.latest_charge)
    await sync.settle()
    assert (await _refresh(invoice)).dispute_status == "needs_response"
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.dispute_flagged_at is not None

    sync.standin.dashboard.close_dispute(dispute["id"], won=True)
    await sync.settle()
    assert (await _refresh(invoice)).dispute_status == "won"
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.dispute_flagged_at is None
    [row] = await Dispute.objects().where(Dispute.merchant_id == tenant.merchant_id)
    assert row.status == "won"
    assert row.closed_at is not None


async def test_void_and_uncollectible_from_the_dashboard_are_applied(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    _, voided = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(2)  # the next signup's settle pushes this one
    _, written_off = await invoiced_merchant(stripe_client, operator, sync)
    await sync.settle()
    voided, written_off = await _refresh(voided), await _refresh(written_off)
    assert voided.stripe_invoice_id
    assert written_off.stripe_invoice_id
    sync.standin.dashboard.void_invoice(voided.stripe_invoice_id)
    sync.standin.dashboard.mark_uncollectible(written_off.stripe_invoice_id)
    await sync.settle()
    assert (await _refresh(voided)).status == "void"
    assert (await _refresh(written_off)).status == "uncollectible"


async def test_our_void_is_pushed_to_stripe(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()
    response = await stripe_client.post(f"/v1/invoices/{invoice.id}/void", headers=operator.headers)
    assert response.status_code == 200, response.text
    await sync.settle()
    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert stripe_invoice["status"] == "void"
    assert (await _refresh(invoice)).status == "void"


async def test_a_payment_carries_its_charge_in_the_api_and_the_payments_export(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    [charge] = sync.standin.objects("charge")
    response = await stripe_client.get(f"/v1/invoices/{invoice.id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    [payment] = response.json()["payments"]
    assert (payment["stripe_charge_id"], payment["stripe_payment_intent_id"]) == (
        charge["id"],
        charge["payment_intent"],
    )
    assert payment["amount_minor"] == invoice.total_minor

    [row] = await Payment.objects().where(Payment.merchant_id == tenant.merchant_id)
    day = row.paid_at.date()
    export = await stripe_client.get(
        "/v1/finance/exports/payments",
        params={
            "from": (day - timedelta(days=1)).isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "merchant_id": str(tenant.merchant_id),
            "format": "csv",
            "include_test": "true",  # a merchant on a test clock is test data
        },
        headers=operator.headers,
    )
    assert export.status_code == 200, export.text
    [exported] = list(csv.DictReader(io.StringIO(export.text)))
    assert (exported["stripe_charge_id"], exported["stripe_payment_intent_id"]) == (
        charge["id"],
        charge["payment_intent"],
    )
