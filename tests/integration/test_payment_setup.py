# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""A merchant can actually pay: the payment-setup link of signup opens a Stripe Checkout page
(setup mode), the card saved there becomes the one its invoices are charged to (our record
from Stripe's events), the billing portal opens, and until a card is saved invoices are sent
with a payment link — and dunned only once overdue, never for lacking a card."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from service import retention
from service.db.tables import (
    AuditEntry,
    Invoice,
    Merchant,
    OutgoingEvent,
    PaymentMethodRow,
    PaymentSetupLink,
    StripeOutbox,
    Subscription,
)
from service.settings import RetentionSettings
from tests.integration.conftest import Tenant, signup_answer
from tests.integration.invoicing_helpers import advance, close_pass, new_clock
from tests.integration.outgoing_helpers import registered
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_settings,
    sync,
)

MARCH = "2026-03-10T00:00:00+08:00"


def _path(url: str) -> str:
    return urlsplit(url).path


async def _signed_up(
    client: httpx.AsyncClient, operator: Tenant, sync: Sync, **extra: Any
) -> tuple[Tenant, dict[str, Any], str]:
    clock = await new_clock(client, operator, MARCH)
    tenant, created = await signup_answer(client, operator, test_clock_id=clock, **extra)
    sync.merchant_ids.append(tenant.merchant_id)
    return tenant, created, clock


async def _invoice(merchant_id: uuid.UUID) -> Invoice:
    [row] = await Invoice.objects().where(Invoice.merchant_id == merchant_id)
    return row


async def _subscription_status(merchant_id: uuid.UUID) -> str:
    row = await Subscription.objects().where(Subscription.merchant_id == merchant_id).first()
    assert row is not None
    return row.status


async def _events(merchant_id: uuid.UUID, event_type: str) -> list[dict[str, Any]]:
    rows = (
        await OutgoingEvent.select(OutgoingEvent.body)
        .where(OutgoingEvent.merchant_id == merchant_id)
        .where(OutgoingEvent.type == event_type)
        .order_by(OutgoingEvent.recorded_at)
    )
    return [json.loads(row["body"]) for row in rows]


async def test_signup_link_opens_checkout_and_the_card_saved_there_is_charged(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, created, _ = await _signed_up(stripe_client, operator, sync)
    setup = created["payment_setup"]
    assert setup["url"].startswith("http://127.0.0.1:8000/v1/pay/setup/ps_")
    assert created["merchant"]["can_be_charged"] is False

    # No key is needed (a browser opens it); the Stripe customer is not made yet: try again.
    early = await stripe_client.get(_path(setup["url"]))
    assert early.status_code == 503, early.text
    assert early.headers["retry-after"] == "5"
    assert early.json()["type"].endswith("/payment-account-pending")

    await sync.settle()  # the customer is pushed
    opened = await stripe_client.get(_path(setup["url"]))
    assert opened.status_code == 303, opened.text
    location = opened.headers["location"]
    assert location.startswith(f"{sync.standin.base_url}/_standin/checkout/cs_")
    [session] = sync.standin.objects("checkout.session")
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert (session["mode"], session["currency"], session["customer"]) == (
        "setup",
        "cny",
        merchant.stripe_customer_id,
    )
    assert session["success_url"] == "http://127.0.0.1:8000/pay/setup/complete"
    assert session["cancel_url"] == "http://127.0.0.1:8000/pay/setup/canceled"
    again = await stripe_client.get(_path(setup["url"]))  # the same open session, not a new one
    assert again.headers["location"] == location
    assert sync.standin.count("checkout.session") == 1

    sync.standin.hosted.complete_checkout(session["id"], card="tok_mastercard")
    await sync.settle()
    me = (await stripe_client.get("/v1/merchants/me", headers=tenant.headers)).json()
    assert me["can_be_charged"] is True
    card = me["default_payment_method"]
    assert (card["type"], card["card_brand"], card["card_last4"]) == ("card", "mastercard", "4444")
    customer = sync.standin.objects("customer")[-1]
    assert customer["invoice_settings"]["default_payment_method"] == card["id"]
    commands = [
        row.command
        for row in await StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == tenant.merchant_id)
        .order_by(StripeOutbox.id)
    ]
    assert commands == ["customer.create", "payment_method.set_default"]

    used = await stripe_client.get(_path(setup["url"]))  # a link saves one way to pay
    assert used.status_code == 410, used.text
    assert "billing-portal" in used.json()["detail"]

    await close_pass(tenant.merchant_id)  # the first period's fee: charged to the card
    await sync.settle()
    invoice = await _invoice(tenant.merchant_id)
    assert (invoice.status, invoice.collection_method, invoice.due_at) == (
        "paid",
        "charge_automatically",
        None,
    )
    [charge] = sync.standin.objects("charge")
    assert charge["payment_method"] == card["id"]


async def test_a_link_is_the_credential_and_says_what_to_do_when_it_does_not_work(
    stripe_client: httpx.AsyncClient, client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, created, _ = await _signed_up(stripe_client, operator, sync)
    token = _path(created["payment_setup"]["url"]).rsplit("/", 1)[-1]
    other, _, _ = await _signed_up(stripe_client, operator, sync)
    # Another merchant's id with this token's secret, a made-up token, a cut one: not found.
    forged = token.replace(tenant.merchant_id.hex, other.merchant_id.hex)
    for wrong in (forged, "ps_" + "0" * 32 + "_" + "x" * 43, token[:-3], "anything"):
        refused = await stripe_client.get(f"/v1/pay/setup/{wrong}")
        assert refused.status_code == 404, (wrong, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "POST /v1/merchants/me/payment-setup" in refused.json()["detail"]
    # Without a Stripe key there is no page to open: a clear 409.
    unconfigured = await client.get(f"/v1/pay/setup/{token}")
    assert unconfigured.status_code == 409
    assert unconfigured.json()["type"].endswith("/payments-not-configured")
    assert "STRIPE_API_KEY" in unconfigured.json()["detail"]
    # An expired link is gone.
    await PaymentSetupLink.update(
        {PaymentSetupLink.expires_at: datetime.now(UTC) - timedelta(seconds=1)}
    ).where(PaymentSetupLink.merchant_id == tenant.merchant_id)
    expired = await stripe_client.get(f"/v1/pay/setup/{token}")
    assert expired.status_code == 410
    assert expired.json()["type"].endswith("/payment-link-gone")


async def test_a_replayed_signup_shows_no_link_and_a_new_one_can_be_asked_for(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    body = {
        "merchant": {"name": "Replayed shop", "contact_email": "r@shop.cn"},
        "plan": "basic",
        "payment_setup": {"success_url": "https://app.kefu.example/ok"},
    }
    headers = {**operator.headers, "Idempotency-Key": str(uuid.uuid4())}
    first = await stripe_client.post("/v1/signup", json=body, headers=headers)
    again = await stripe_client.post("/v1/signup", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["payment_setup"]["url"]
    assert again.json()["payment_setup"] is None  # shown once, like the key
    merchant_id = uuid.UUID(first.json()["merchant"]["id"])
    assert await PaymentSetupLink.count().where(PaymentSetupLink.merchant_id == merchant_id) == 1

    tenant = Tenant(
        merchant_id=merchant_id,
        key=first.json()["api_key"]["key"],
        key_id=uuid.UUID(first.json()["api_key"]["id"]),
    )
    sync.merchant_ids.append(merchant_id)
    await sync.settle()
    fresh = await stripe_client.post(
        "/v1/merchants/me/payment-setup",
        json={"success_url": "https://app.kefu.example/card-saved"},
        headers=tenant.headers,
    )
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["url"] != first.json()["payment_setup"]["url"]
    [entry] = (
        await AuditEntry.objects()
        .where(AuditEntry.merchant_id == merchant_id)
        .where(AuditEntry.entity == "payment_setup_link")
    )
    assert (entry.action, entry.actor_role) == ("created", "merchant")
    token = _path(fresh.json()["url"]).rsplit("/", 1)[-1]
    assert token not in json.dumps(entry.changes)
    opened = await stripe_client.get(_path(fresh.json()["url"]))
    assert opened.status_code == 303
    [session] = sync.standin.objects("checkout.session")
    assert session["success_url"] == "https://app.kefu.example/card-saved"
    by_operator = await stripe_client.post(
        "/v1/merchants/me/payment-setup", json={}, headers=operator.headers
    )
    assert by_operator.status_code == 403
    no_body = await stripe_client.post("/v1/merchants/me/payment-setup", headers=tenant.headers)
    assert no_body.status_code == 201, no_body.text


async def test_the_billing_portal_opens_with_a_configuration_made_at_first_use(
    stripe_client: httpx.AsyncClient, client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, _ = await _signed_up(stripe_client, operator, sync)
    early = await stripe_client.post("/v1/merchants/me/billing-portal", headers=tenant.headers)
    assert early.status_code == 503
    assert early.headers["retry-after"] == "5"
    unconfigured = await client.post("/v1/merchants/me/billing-portal", headers=tenant.headers)
    assert unconfigured.status_code == 409

    await sync.settle()
    for _ in range(2):
        portal = await stripe_client.post("/v1/merchants/me/billing-portal", headers=tenant.headers)
        assert portal.status_code == 201, portal.text
        assert portal.json()["url"].startswith(f"{sync.standin.base_url}/_standin/portal/bps_")
    [configuration] = sync.standin.objects("billing_portal.configuration")
    assert configuration["is_default"] is False
    assert configuration["metadata"] == {"kefu_portal": "v1"}
    assert configuration["features"]["payment_method_update"]["enabled"] is True
    sessions = sync.standin.objects("billing_portal.session")
    assert [s["configuration"] for s in sessions] == [configuration["id"]] * 2
    assert sessions[0]["return_url"] == "http://127.0.0.1:8000/pay/portal/return"

    # In the portal the merchant replaces its card: our record follows Stripe's events.
    first_card = await add_card(sync, tenant.merchant_id)
    sync.standin.hosted.replace_card(sessions[0]["id"], card="tok_mastercard")
    await sync.settle()
    me = (await stripe_client.get("/v1/merchants/me", headers=tenant.headers)).json()
    assert me["default_payment_method"]["id"] != first_card
    assert me["default_payment_method"]["card_brand"] == "mastercard"


async def test_without_a_card_invoices_are_sent_with_a_payment_link_and_never_dunned_for_it(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, clock = await _signed_up(stripe_client, operator, sync)
    async with registered(
        stripe_client,
        operator,
        "https://platform.example.com/kefu",
        events=["payment_method.required"],
        merchant_id=tenant.merchant_id,
    ):
        await close_pass(tenant.merchant_id)
        await sync.settle()
        invoice = await _invoice(tenant.merchant_id)
        # Sent: due 14 days (the plan's) after it was issued, on the merchant's (test) clock.
        assert (invoice.status, invoice.collection_method) == ("open", "send_invoice")
        assert invoice.awaits_payment_method is True
        assert invoice.finalized_at is not None
        assert invoice.due_at == invoice.finalized_at + timedelta(days=14)
        [stripe_invoice] = [
            i for i in sync.standin.objects("invoice") if i["id"] == invoice.stripe_invoice_id
        ]
        assert stripe_invoice["collection_method"] == "send_invoice"
        assert len(sync.standin.events("invoice.sent")) == 1
        assert sync.standin.count("charge") == 0  # nothing was tried: nothing failed
        shown = (
            await stripe_client.get(f"/v1/invoices/{invoice.id}", headers=tenant.headers)
        ).json()
        assert shown["payment_url"] == stripe_invoice["hosted_invoice_url"]
        assert shown["collection_method"] == "send_invoice"
        assert shown["due_at"] == "2026-03-23T16:00:00Z"
        document = await stripe_client.get(
            f"/v1/invoices/{invoice.id}.html", headers=tenant.headers
        )
        assert f'href="{stripe_invoice["hosted_invoice_url"]}"' in document.text
        assert "due by 2026-03-24" in document.text  # the merchant's zone, named on the page
        # The platform hears it, with a link where the merchant saves a way to pay.
        [required] = await _events(tenant.merchant_id, "payment_method.required")
        assert required["data"]["reason"] == "invoice_sent_without_payment_method"
        assert required["data"]["invoice_id"] == str(invoice.id)
        assert required["created"] == "2026-03-09T16:00:00Z"  # the merchant's clock
        opened = await stripe_client.get(_path(required["data"]["setup_url"]))
        assert opened.status_code == 303
    assert await _subscription_status(tenant.merchant_id) == "active"

    # Up to its due date nothing happens; once overdue, dunning counts it.
    await advance(stripe_client, operator, clock, "2026-03-24T00:00:00+08:00")
    await sync.settle()
    assert await _subscription_status(tenant.merchant_id) == "active"
    await advance(stripe_client, operator, clock, "2026-03-24T00:00:01+08:00")
    await sync.settle()
    assert await _subscription_status(tenant.merchant_id) == "past_due"
    assert (await _invoice(tenant.merchant_id)).overdue_stage == 1

    # The merchant pays on the hosted page (WeChat Pay): paid, and active again.
    sync.standin.hosted.pay_invoice(str(invoice.stripe_invoice_id), method="wechat_pay")
    await sync.settle()
    assert (await _invoice(tenant.merchant_id)).status == "paid"
    assert await _subscription_status(tenant.merchant_id) == "active"


async def test_an_overdue_sent_invoice_suspends_as_long_after_as_a_failing_card_would(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, clock = await _signed_up(stripe_client, operator, sync)
    await close_pass(tenant.merchant_id)
    await sync.settle()
    await advance(stripe_client, operator, clock, "2026-04-01T00:00:00+08:00")
    await sync.settle()
    assert await _subscription_status(tenant.merchant_id) == "past_due"
    await advance(stripe_client, operator, clock, "2026-04-08T00:00:01+08:00")  # 15 days late
    await sync.settle()
    assert await _subscription_status(tenant.merchant_id) == "suspended"
    assert (await _invoice(tenant.merchant_id)).overdue_stage == 2


async def test_a_card_saved_later_pays_the_sent_invoice_with_it(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, created, _ = await _signed_up(stripe_client, operator, sync)
    await close_pass(tenant.merchant_id)
    await sync.settle()
    invoice = await _invoice(tenant.merchant_id)
    assert (invoice.status, invoice.collection_method) == ("open", "send_invoice")

    opened = await stripe_client.get(_path(created["payment_setup"]["url"]))
    sync.standin.hosted.complete_checkout(opened.headers["location"].rsplit("/", 1)[-1])
    await sync.settle()
    paid = await _invoice(tenant.merchant_id)
    assert paid.status == "paid"
    [charge] = sync.standin.objects("charge")
    me = (await stripe_client.get("/v1/merchants/me", headers=tenant.headers)).json()
    assert charge["payment_method"] == me["default_payment_method"]["id"]
    pays = [
        (row.command, row.payload)
        for row in await StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == tenant.merchant_id)
        .order_by(StripeOutbox.id)
        if row.command == "invoice.retry_payment"
    ]
    assert len(pays) == 1
    assert json.loads(pays[0][1])["payment_method"] == charge["payment_method"]


async def test_a_custom_contract_pays_by_sent_invoice_with_its_own_terms(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, created, _ = await _signed_up(
        stripe_client,
        operator,
        sync,
        plan="custom",
        payment_terms={"collection": "send_invoice", "days_until_due": 30},
        contract_overrides={"orders": {"unit_price": "0.15"}},
    )
    assert created["merchant"]["payment_terms"] == {
        "collection": "send_invoice",
        "days_until_due": 30,
    }
    async with registered(
        stripe_client,
        operator,
        "https://platform.example.com/kefu",
        events=["payment_method.required"],
        merchant_id=tenant.merchant_id,
    ):
        await add_card(sync, tenant.merchant_id)  # a card on file changes nothing: terms rule
        await close_pass(tenant.merchant_id)
        await sync.settle()
        invoice = await _invoice(tenant.merchant_id)
        assert (invoice.collection_method, invoice.status) == ("send_invoice", "open")
        assert invoice.awaits_payment_method is False
        assert invoice.finalized_at is not None
        assert invoice.due_at == invoice.finalized_at + timedelta(days=30)
        assert await _events(tenant.merchant_id, "payment_method.required") == []
    [stripe_invoice] = [
        i for i in sync.standin.objects("invoice") if i["id"] == invoice.stripe_invoice_id
    ]
    assert stripe_invoice["collection_method"] == "send_invoice"
    assert sync.standin.count("charge") == 0
    # Paid by bank transfer: marked paid in the Stripe dashboard.
    sync.standin.dashboard.mark_invoice_paid(stripe_invoice["id"])
    await sync.settle()
    assert (await _invoice(tenant.merchant_id)).status == "paid"


async def test_only_negotiated_contracts_pay_every_invoice_by_transfer(
    stripe_client: httpx.AsyncClient, operator: Tenant
) -> None:
    refused = await stripe_client.post(
        "/v1/signup",
        json={
            "merchant": {"name": "Basic by transfer", "contact_email": "t@shop.cn"},
            "plan": "basic",
            "payment_terms": {"collection": "send_invoice"},
        },
        headers={**operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "payment_terms.collection"
    tenant, _ = await signup_answer(stripe_client, operator, plan="custom")
    contract = await stripe_client.put(
        f"/v1/merchants/{tenant.merchant_id}/contract",
        json={
            "overrides": {"orders": {"unit_price": "0.15"}},
            "effective_from": "2026-10-01T00:00:00+08:00",
            "payment_terms": {"collection": "send_invoice", "days_until_due": 45},
        },
        headers=operator.headers,
    )
    assert contract.status_code == 200, contract.text
    assert contract.json()["payment_terms"] == {"collection": "send_invoice", "days_until_due": 45}
    me = (await stripe_client.get("/v1/merchants/me", headers=tenant.headers)).json()
    assert me["payment_terms"] == {"collection": "send_invoice", "days_until_due": 45}


async def test_losing_the_card_tells_the_platform_and_later_invoices_are_sent(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, clock = await _signed_up(stripe_client, operator, sync)
    card = await add_card(sync, tenant.merchant_id)
    async with registered(
        stripe_client,
        operator,
        "https://platform.example.com/kefu",
        events=["payment_method.required"],
        merchant_id=tenant.merchant_id,
    ):
        sync.standin.dashboard.detach_payment_method(card)
        await sync.settle()
        me = (await stripe_client.get("/v1/merchants/me", headers=tenant.headers)).json()
        assert (me["can_be_charged"], me["default_payment_method"]) == (False, None)
        [removed] = await _events(tenant.merchant_id, "payment_method.required")
        assert removed["data"]["reason"] == "payment_method_removed"
        assert removed["data"]["object"]["can_be_charged"] is False
        assert (await stripe_client.get(_path(removed["data"]["setup_url"]))).status_code == 303
    await close_pass(tenant.merchant_id)
    await sync.settle()
    assert (await _invoice(tenant.merchant_id)).collection_method == "send_invoice"
    assert await _subscription_status(tenant.merchant_id) == "active"
    assert clock


async def test_an_older_event_about_the_card_never_undoes_a_newer_one(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, _ = await _signed_up(stripe_client, operator, sync)
    await sync.settle()  # the customer is pushed
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    customer = str(merchant.stripe_customer_id)
    now = int(time.time())
    sync.standin.webhooks.hold()
    sync.standin.set_time(now)
    card = sync.standin.dashboard.attach_card(customer)  # attached, then made the default
    sync.standin.set_time(now + 60)
    sync.standin.dashboard.detach_payment_method(card["id"])  # no default, then detached
    by_id = {e["id"]: e for e in sync.standin.events()}
    held = sync.standin.webhooks.held()
    newer = [i for i in held if by_id[i]["created"] == now + 60]
    older = [i for i in held if by_id[i]["created"] == now]
    assert {by_id[i]["type"] for i in older} == {"payment_method.attached", "customer.updated"}

    sync.standin.webhooks.release(newer, keep_holding=True)  # the newer events come first
    await sync.settle()
    sync.standin.webhooks.release(older)  # the older ones arrive late
    await sync.settle()
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.default_payment_method_id is None
    [row] = await PaymentMethodRow.objects().where(
        PaymentMethodRow.merchant_id == tenant.merchant_id
    )
    assert (row.id, row.is_attached, row.card_last4) == (card["id"], False, "4242")


async def test_links_long_expired_are_removed_by_retention_and_young_ones_stay(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, _ = await _signed_up(stripe_client, operator, sync)
    for _ in range(2):
        made = await stripe_client.post(
            "/v1/merchants/me/payment-setup", json={}, headers=tenant.headers
        )
        assert made.status_code == 201
    links = (
        await PaymentSetupLink.objects()
        .where(PaymentSetupLink.merchant_id == tenant.merchant_id)
        .order_by(PaymentSetupLink.created_at)
    )
    now = datetime.now(UTC)
    for link, expired in zip(
        links, (now - timedelta(days=31), now - timedelta(days=29)), strict=False
    ):
        await PaymentSetupLink.update({PaymentSetupLink.expires_at: expired}).where(
            (PaymentSetupLink.merchant_id == tenant.merchant_id) & (PaymentSetupLink.id == link.id)
        )
    only_links = RetentionSettings(
        idempotency_days=0,
        stripe_events_days=0,
        outbox_sent_days=0,
        reconciliations_days=0,
        audit_months=0,
        webhook_events_days=0,
        payment_links_days=30,
    )
    summary = await retention.run_pass(only_links, now=now)
    assert summary.removed["payment_setup_links"] >= 1
    kept = await PaymentSetupLink.objects().where(
        PaymentSetupLink.merchant_id == tenant.merchant_id
    )
    assert sorted(link.id for link in kept) == sorted(link.id for link in links[1:])
