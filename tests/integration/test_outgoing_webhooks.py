# ruff: noqa: F811 - fixtures are imported from the helpers
"""Outgoing webhooks in one process: endpoints registered through the API, events written with
the changes that cause them, delivered by the worker's pass over real HTTP to a receiver on
loopback that checks every signature with the README's own code."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.db.engine import current as current_database
from service.db.tables import Invoice, OutgoingDelivery, OutgoingEvent, WebhookEndpoint
from service.observability import logging as billing_logging
from service.openapi import API_VERSION
from service.outgoing import emit, eventlog, watch
from service.outgoing.types import EventType
from service.settings import Settings
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, new_clock
from tests.integration.outgoing_helpers import (  # noqa: F401 - fixtures
    Deliverer,
    Receiver,
    as_utc,
    receiver_example,
    receiving,
    registered,
    webhook_client,
    webhook_settings,
)
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

HOUR = timedelta(hours=1)


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The README's ``verify``: the receiver example's own signature check."""
    return receiver_example("not-used-by-these-tests", monkeypatch).verify


@pytest.fixture
def receiver(verify: Any) -> Iterator[Receiver]:
    with receiving(verify) as running:
        yield running


async def _orders(client: httpx.AsyncClient, tenant: Tenant, txn: str, count: int, at: str) -> None:
    answer = await client.post(
        "/v1/usage/events",
        json={"transaction_id": txn, "metric": "orders", "occurred_at": at, "quantity": count},
        headers=tenant.headers,
    )
    assert answer.status_code == 201, answer.text


async def _watch(merchant_id: UUID) -> watch.WatchSummary:
    return await watch.run(now=datetime.now(UTC), tax_rate=0, merchant_ids=[merchant_id])


def _assert_each_delivery_once_and_verified(receiver: Receiver) -> None:
    assert receiver.arrivals
    assert all(arrival.event is not None for arrival in receiver.arrivals), [
        a.refusal for a in receiver.arrivals
    ]
    deliveries = Counter(arrival.delivery_id for arrival in receiver.arrivals)
    assert set(deliveries.values()) == {1}
    events = Counter(arrival.headers["Kefu-Event-Id"] for arrival in receiver.arrivals)
    assert set(events.values()) == {1}
    for arrival in receiver.arrivals:
        assert arrival.event is not None
        assert arrival.event["id"] == arrival.headers["Kefu-Event-Id"]
        assert arrival.event["type"] == arrival.headers["Kefu-Event-Type"]


async def _recorded_order(merchant_id: UUID, endpoint_id: UUID) -> list[str]:
    """The merchant's event ids for the endpoint in the order they were recorded."""
    rows = await current_database().pool.fetch(
        "SELECT event_id FROM outgoing_deliveries WHERE merchant_id = $1 AND endpoint_id = $2"
        " AND NOT is_replay ORDER BY seq",
        merchant_id,
        endpoint_id,
    )
    return [str(row["event_id"]) for row in rows]


# -- a merchant's month ------------------------------------------------------------------------


MONTH = [
    "subscription.created",
    "invoice.finalized",  # the first period's fee, billed at once
    "invoice.paid",
    "usage.threshold_reached",  # 80% of the 3,000 orders basic includes
    "usage.threshold_reached",  # 100%
    "plan.cheaper_available",  # 3,600 orders: advanced (¥300) costs less than basic (¥399)
    "subscription.updated",  # April begins
    "invoice.finalized",  # March's usage and April's fee
    "invoice.payment_failed",
    "subscription.past_due",
    "invoice.paid",  # the dunning retry three days later goes through
    "subscription.resumed",
]


async def test_a_merchants_month_reaches_the_receiver_once_each_signed_and_in_order(
    webhook_client: httpx.AsyncClient,
    operator: Tenant,
    sync: Sync,
    receiver: Receiver,
) -> None:
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        deliverer = Deliverer([endpoint.id])
        clock = await new_clock(webhook_client, operator, "2026-03-01T00:00:00+08:00")
        tenant, subscription = await signup_tenant(
            webhook_client, operator, plan="basic", test_clock_id=clock, name="Month shop"
        )
        merchant = tenant.merchant_id
        sync.merchant_ids.append(merchant)
        await add_card(sync, merchant)  # its invoices are charged to it
        await deliverer.run()
        await close_pass(merchant)  # the first period's fee
        await sync.settle()  # pushed to Stripe and paid
        await deliverer.run()

        await advance(webhook_client, operator, clock, "2026-03-20T00:00:00+08:00")
        await _orders(webhook_client, tenant, "m-1", 2500, "2026-03-10T10:00:00+08:00")
        assert (await _watch(merchant)).thresholds == 1
        await _orders(webhook_client, tenant, "m-2", 700, "2026-03-12T10:00:00+08:00")
        assert (await _watch(merchant)).thresholds == 1
        await _orders(webhook_client, tenant, "m-3", 400, "2026-03-15T10:00:00+08:00")
        assert (await _watch(merchant)).cheaper_plans == 1
        assert (await _watch(merchant)) == watch.WatchSummary()  # once each per period
        await deliverer.run()

        await advance(webhook_client, operator, clock, "2026-04-03T00:00:00+08:00")
        await close_pass(merchant)
        sync.standin.dashboard.decline_next_payments(1)
        now = datetime.now(UTC)
        await sync.settle(now=now)
        await deliverer.run()
        failed = (
            await Invoice.objects()
            .where((Invoice.merchant_id == merchant) & (Invoice.payment_attempts == 1))
            .first()
        )
        assert failed is not None
        assert failed.next_payment_retry_at is not None
        await sync.settle(now=failed.next_payment_retry_at + timedelta(minutes=1))
        summary = await deliverer.run()
        await deliverer.close()

        assert summary.retrying == summary.given_up == 0
        assert receiver.types(merchant) == MONTH
        _assert_each_delivery_once_and_verified(receiver)
        received = receiver.events(merchant)
        assert [e["id"] for e in received] == await _recorded_order(merchant, endpoint.id)
        assert all(e["api_version"] == API_VERSION and e["created"].endswith("Z") for e in received)
        assert received[0]["created"] == "2026-02-28T16:00:00Z"  # the merchant's (test) clock

        # data.object is what the API answers (nothing changed since the last events).
        listed = await webhook_client.get("/v1/subscriptions", headers=tenant.headers)
        assert as_utc(received[-1]["data"]["object"]) == as_utc(listed.json()[0])
        assert received[0]["data"]["object"]["id"] == subscription["id"]
        paid_invoice = received[-2]["data"]["object"]
        shown = await webhook_client.get(
            f"/v1/invoices/{paid_invoice['id']}", headers=tenant.headers
        )
        # The payment's Stripe intent and charge are asked of Stripe after invoice.paid.
        shown_then = shown.json()
        for payment in shown_then["payments"]:
            assert payment["stripe_charge_id"]
            payment.update(stripe_payment_intent_id=None, stripe_charge_id=None)
        assert as_utc(paid_invoice) == as_utc(shown_then)
        assert paid_invoice["status"] == "paid"
        assert paid_invoice["lines"]
        threshold = received[4]["data"]
        assert threshold["threshold"]["percent"] == 100
        assert threshold["threshold"]["included_orders"] == "3000"
        assert threshold["threshold"]["orders"] == "3200"
        orders = next(m for m in threshold["object"]["metrics"] if m["metric"] == "orders")
        assert orders["quantity"] == "3200"
        nudge = received[5]["data"]
        assert nudge["object_type"] == "plan_quote"
        assert nudge["current_plan"] == {
            "plan_code": "basic",
            "plan_version": 1,
            "total_minor": 39900,
        }
        assert nudge["cheaper_plan"]["plan_code"] == "advanced"
        assert nudge["cheaper_plan"]["total_minor"] == 30000
        assert nudge["saving_minor"] == 9900
        assert nudge["object"]["quotes"][0]["plan_code"] == "advanced"


async def test_each_merchant_is_heard_in_its_own_order_and_a_dead_endpoint_holds_back_no_other(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver, verify: Any
) -> None:
    with receiving(verify) as dead:
        dead.stop()  # nothing listens there
        async with (
            registered(webhook_client, operator, receiver.url) as live,
            registered(webhook_client, operator, dead.url) as gone,
        ):
            receiver.secret = live.secret
            clock = await new_clock(webhook_client, operator, "2026-05-01T00:00:00+08:00")
            shops = [
                (await signup_tenant(webhook_client, operator, test_clock_id=clock, name=n))[0]
                for n in ("Order shop A", "Order shop B")
            ]
            for step in range(3):  # interleaved: A, B, A, B ...
                for shop in shops:
                    subs = await webhook_client.get("/v1/subscriptions", headers=shop.headers)
                    sub_id = subs.json()[0]["id"]
                    addons = [["tooling_bundle"], ["fast_response"], []][step]
                    changed = await webhook_client.post(
                        f"/v1/subscriptions/{sub_id}/add-ons",
                        json={"addons": addons},
                        headers=shop.headers,
                    )
                    assert changed.status_code == 200, changed.text
            deliverer = Deliverer([live.id, gone.id])
            summary = await deliverer.run()
            await deliverer.close()

            assert summary.delivered == 8
            assert summary.retrying == 2
            for shop in shops:
                got = receiver.events(shop.merchant_id)
                assert [e["type"] for e in got] == ["subscription.created"] + [
                    "subscription.updated"
                ] * 3
                assert [e["id"] for e in got] == await _recorded_order(shop.merchant_id, live.id)
            waiting = await OutgoingDelivery.select(OutgoingDelivery.status).where(
                OutgoingDelivery.endpoint_id == gone.id
            )
            # The dead endpoint: each merchant's first delivery tried (and waiting to retry),
            # the rest of its queue untried behind it.
            assert Counter(row["status"] for row in waiting) == {"pending": 8}
            tried = await current_database().pool.fetchval(
                "SELECT count(*) FROM outgoing_attempts a JOIN outgoing_deliveries d"
                " ON d.merchant_id = a.merchant_id AND d.id = a.delivery_id"
                " WHERE d.endpoint_id = $1",
                gone.id,
            )
            assert tried == 2


async def test_a_receiver_down_for_a_while_gets_everything_after_it_returns(
    webhook_client: httpx.AsyncClient, operator: Tenant, sync: Sync, receiver: Receiver
) -> None:
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        receiver.stop()  # down: connections refused
        clock = await new_clock(webhook_client, operator, "2026-06-01T00:00:00+08:00")
        tenant, subscription = await signup_tenant(webhook_client, operator, test_clock_id=clock)
        sync.merchant_ids.append(tenant.merchant_id)
        await add_card(sync, tenant.merchant_id)
        await close_pass(tenant.merchant_id)
        await sync.settle()  # Stripe pushes go on while the endpoint is down
        cancel = await webhook_client.post(
            f"/v1/subscriptions/{subscription['id']}/cancel",
            json={"at_period_end": True},
            headers=tenant.headers,
        )
        assert cancel.status_code == 200
        deliverer = Deliverer([endpoint.id])
        now = datetime.now(UTC)
        for hour in range(6):  # six hours of tries, backing off
            summary = await deliverer.run(at=now + hour * HOUR)
            assert summary.delivered == 0
        expected = [
            "subscription.created",
            "invoice.finalized",
            "invoice.paid",
            "subscription.updated",
        ]
        events = (
            await OutgoingEvent.select(OutgoingEvent.type)
            .where(OutgoingEvent.merchant_id == tenant.merchant_id)
            .order_by(OutgoingEvent.recorded_at)
        )
        assert [row["type"] for row in events] == expected
        first = await eventlog.events(merchant_id=tenant.merchant_id, limit=10)
        head = first[-1].deliveries[0]
        assert head.status == "pending"
        assert head.attempts >= 3
        assert {d.attempts for e in first[:-1] for d in e.deliveries} == {0}  # waiting behind it

        receiver.start()  # back, on the same address
        summary = await deliverer.run(at=now + 7 * HOUR)
        await deliverer.close()
        assert summary.delivered == 4
        assert receiver.types(tenant.merchant_id) == expected
        _assert_each_delivery_once_and_verified(receiver)


async def _metrics(settings: Settings) -> dict[str, float]:
    """``/metrics`` of a fresh read of the stored figures, by name (samples without labels)."""
    app = create_app(dataclasses.replace(settings, metrics_cache_seconds=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        text = (await client.get("/metrics")).text
    billing_logging.configure(log_format="console", force=True)
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_a_receiver_answering_500_forever_ends_disabled_with_its_log_visible(
    webhook_client: httpx.AsyncClient,
    webhook_settings: Settings,
    operator: Tenant,
    receiver: Receiver,
) -> None:
    receiver.status = 500
    receiver.answer = b"boom " * 200  # only an excerpt of it is kept
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        tenant, _ = await signup_tenant(webhook_client, operator, name="Failing receiver shop")
        deliverer = Deliverer([endpoint.id])
        at = started = datetime.now(UTC)
        attempts = 0
        for _ in range(40):  # each pass when the backoff says the next attempt is due
            summary = await deliverer.run(at=at)
            attempts += summary.retrying + summary.given_up
            if summary.endpoints_disabled:
                break
            due = await OutgoingDelivery.select(OutgoingDelivery.next_attempt_at).where(
                OutgoingDelivery.endpoint_id == endpoint.id
            )
            at = due[0]["next_attempt_at"]
        assert attempts == 20  # BILLING_WEBHOOK_DISABLE_AFTER_FAILURES, documented default
        assert summary.given_up == 0  # within the 72 hours of retries: disabled first
        assert timedelta(hours=24) < at - started < timedelta(hours=72)
        assert (await deliverer.run(at=at + 400 * HOUR)).is_idle  # disabled: nothing is tried

        shown = await webhook_client.get(
            f"/v1/webhook-endpoints/{endpoint.id}", headers=operator.headers
        )
        assert shown.json()["status"] == "disabled"
        assert shown.json()["consecutive_failures"] == 20
        assert "20 consecutive failed deliveries" in shown.json()["disabled_reason"]
        listed = await webhook_client.get(
            "/v1/webhook-events", params={"merchant_id": str(tenant.merchant_id)},
            headers=operator.headers,
        )  # fmt: skip
        assert listed.status_code == 200
        [event] = listed.json()
        assert event["type"] == "subscription.created"
        logged = await webhook_client.get(
            f"/v1/webhook-events/{event['id']}", headers=operator.headers
        )
        [row] = logged.json()["deliveries"]
        assert row["status"] == "pending"
        assert row["attempts"] == 20
        assert [a["status_code"] for a in row["log"]] == [500] * 20
        assert {a["outcome"] for a in row["log"]} == {"failed"}
        assert all(a["latency_ms"] is not None for a in row["log"])
        assert row["log"][0]["response_excerpt"] == ("boom " * 60)[:300]
        assert logged.json()["body"]["id"] == event["id"]
        merchant_view = await webhook_client.get(
            f"/v1/webhook-events/{event['id']}", headers=tenant.headers
        )
        assert merchant_view.status_code == 403
        metrics = await _metrics(webhook_settings)
        assert metrics["billing_webhook_endpoints_disabled"] >= 1
        assert metrics["billing_webhook_deliveries_waiting"] >= 1

        receiver.status = 200  # fixed; an operator enables the endpoint again
        refused = await webhook_client.post(
            f"/v1/webhook-endpoints/{endpoint.id}/enable", headers=tenant.headers
        )
        assert refused.status_code == 403
        enabled = await webhook_client.post(
            f"/v1/webhook-endpoints/{endpoint.id}/enable", headers=operator.headers
        )
        assert enabled.status_code == 200
        assert enabled.json()["status"] == "enabled"
        assert enabled.json()["consecutive_failures"] == 0
        summary = await deliverer.run(at=datetime.now(UTC))
        await deliverer.close()
        assert summary.delivered == 1
        assert receiver.events(tenant.merchant_id)[0]["type"] == "subscription.created"


async def test_a_replay_sends_the_same_event_again_as_a_new_delivery(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        _tenant, _ = await signup_tenant(webhook_client, operator, name="Replay shop")
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        [first] = receiver.arrivals
        assert first.event is not None
        made = await eventlog.replay(UUID(first.event["id"]))
        assert [endpoint_id for _, endpoint_id in made] == [endpoint.id]
        await deliverer.run()
        await deliverer.close()
        again = receiver.arrivals[1]
        assert again.body == first.body  # the same event, byte for byte
        assert again.headers["Kefu-Event-Id"] == first.headers["Kefu-Event-Id"]
        assert again.delivery_id != first.delivery_id
        assert again.event is not None  # signed afresh
        with pytest.raises(Exception, match="not found"):
            await eventlog.replay(UUID(int=7))


async def test_an_endpoint_hears_only_the_types_and_merchant_it_names(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    clock = await new_clock(webhook_client, operator, "2026-07-01T00:00:00+08:00")
    heard, _ = await signup_tenant(webhook_client, operator, test_clock_id=clock, name="Heard")
    other, _ = await signup_tenant(webhook_client, operator, test_clock_id=clock, name="Other")
    async with registered(
        webhook_client,
        operator,
        receiver.url,
        events=["invoice.finalized"],
        merchant_id=heard.merchant_id,
    ) as endpoint:
        receiver.secret = endpoint.secret
        await close_pass(heard.merchant_id)
        await close_pass(other.merchant_id)
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()
        assert receiver.types() == ["invoice.finalized"]
        assert receiver.events()[0]["merchant_id"] == str(heard.merchant_id)
    # Nobody wanted the other merchant's events: none was written.
    assert not await OutgoingEvent.exists().where(OutgoingEvent.merchant_id == other.merchant_id)


async def test_a_merchant_registers_its_own_endpoint_and_hears_only_its_own_events(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    own, _ = await signup_tenant(webhook_client, operator, name="Own endpoint shop")
    other, _ = await signup_tenant(webhook_client, operator, name="Someone else")
    foreign = await webhook_client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "events": ["*"], "merchant_id": str(other.merchant_id)},
        headers=own.headers,
    )
    assert foreign.status_code == 404
    async with registered(webhook_client, own, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        assert endpoint.body["registered_by"] == "merchant"
        assert endpoint.body["merchant_id"] == str(own.merchant_id)
        mine = await webhook_client.get("/v1/webhook-endpoints", headers=own.headers)
        assert [e["id"] for e in mine.json()] == [str(endpoint.id)]
        theirs = await webhook_client.get("/v1/webhook-endpoints", headers=other.headers)
        assert str(endpoint.id) not in theirs.text
        hearing = await webhook_client.get(
            "/v1/webhook-endpoints",
            params={"merchant_id": str(own.merchant_id)},
            headers=operator.headers,
        )
        assert str(endpoint.id) in hearing.text
        for shop in (own, other):
            subs = await webhook_client.get("/v1/subscriptions", headers=shop.headers)
            paused = await webhook_client.post(
                f"/v1/subscriptions/{subs.json()[0]['id']}/pause", headers=shop.headers
            )
            assert paused.status_code == 200, paused.text
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()
        assert receiver.types() == ["subscription.updated"]
        assert receiver.events()[0]["merchant_id"] == str(own.merchant_id)
        assert receiver.events()[0]["data"]["object"]["status"] == "paused"


async def test_voids_credit_notes_and_cancellations_are_told(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    clock = await new_clock(webhook_client, operator, "2026-05-10T00:00:00+08:00")
    voided, subscription = await signup_tenant(
        webhook_client, operator, plan="advanced", test_clock_id=clock, name="Voided"
    )
    credited, _ = await signup_tenant(
        webhook_client, operator, test_clock_id=clock, name="Credited"
    )
    for tenant in (voided, credited):
        await close_pass(tenant.merchant_id)  # each one's first fee, open
    [first] = (await webhook_client.get("/v1/invoices", headers=voided.headers)).json()
    [other] = (await webhook_client.get("/v1/invoices", headers=credited.headers)).json()
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        noted = await webhook_client.post(
            f"/v1/invoices/{first['id']}/credit-notes",
            json={"amount_minor": 1000, "reason": "goodwill"},
            headers=operator.headers,
        )
        assert noted.status_code == 201, noted.text
        void = await webhook_client.post(
            f"/v1/invoices/{first['id']}/void", headers=operator.headers
        )
        assert void.status_code == 200, void.text
        await advance(webhook_client, operator, clock, "2026-05-11T00:00:00+08:00")
        canceled = await webhook_client.post(
            f"/v1/subscriptions/{subscription['id']}/cancel",
            json={"at_period_end": False},
            headers=voided.headers,
        )
        assert canceled.status_code == 200, canceled.text
        await close_pass(voided.merchant_id)  # the unused fee, credited: nothing due, paid
        in_full = await webhook_client.post(
            f"/v1/invoices/{other['id']}/credit-notes",
            json={"amount_minor": other["amount_due_minor"], "reason": "billing_error"},
            headers=operator.headers,
        )
        assert in_full.status_code == 201, in_full.text
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()

        events = receiver.events(voided.merchant_id)
        assert [event["type"] for event in events] == [
            "credit_note.issued",
            "invoice.voided",
            "subscription.canceled",
            "invoice.finalized",
            "invoice.paid",
        ]
        assert events[0]["data"]["object"]["id"] == noted.json()["id"]
        assert events[1]["data"]["object"]["status"] == "void"
        assert events[2]["data"]["object"]["canceled_at"] is not None
        assert events[3]["data"]["object"]["total_minor"] == 0
        paid_by_credit = receiver.events(credited.merchant_id)
        assert [event["type"] for event in paid_by_credit] == ["credit_note.issued", "invoice.paid"]
        assert paid_by_credit[1]["data"]["object"]["status"] == "paid"


async def test_a_redirect_is_not_followed(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver, verify: Any
) -> None:
    with receiving(verify) as elsewhere:
        receiver.status = 302
        receiver.answer_headers = {"Location": elsewhere.url}
        async with registered(webhook_client, operator, receiver.url) as endpoint:
            receiver.secret = elsewhere.secret = endpoint.secret
            tenant, _ = await signup_tenant(webhook_client, operator, name="Redirected")
            deliverer = Deliverer([endpoint.id])
            summary = await deliverer.run()
            await deliverer.close()
        assert summary.retrying == 1
        assert len(receiver.arrivals) == 1
        assert elsewhere.arrivals == []
        [event] = await eventlog.events(merchant_id=tenant.merchant_id, limit=1)
        logged = await eventlog.event(event.id)
        [attempt] = logged.deliveries[0].log or []
        assert attempt.status_code == 302
        assert "redirect, which is not followed" in (attempt.error or "")


async def test_a_hostile_answer_is_kept_as_a_short_excerpt_only(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    receiver.status = 500
    receiver.answer = b"\x00\xff<script>" * 10_000
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        tenant, _ = await signup_tenant(webhook_client, operator, name="Hostile answer")
        deliverer = Deliverer([endpoint.id])
        summary = await deliverer.run()
        await deliverer.close()
    assert summary.retrying == 1
    [event] = await eventlog.events(merchant_id=tenant.merchant_id, limit=1)
    [attempt] = (await eventlog.event(event.id)).deliveries[0].log or []
    assert attempt.status_code == 500
    assert attempt.response_excerpt is not None
    assert len(attempt.response_excerpt) <= 300
    assert "\x00" not in attempt.response_excerpt
    assert "<script>" in attempt.response_excerpt


def test_each_subscription_change_is_the_event_the_catalog_says() -> None:
    cases = {
        ("created", None, "active"): "subscription.created",
        ("status_changed", "active", "past_due"): "subscription.past_due",
        ("status_changed", "past_due", "suspended"): "subscription.suspended",
        ("status_changed", "active", "suspended"): "subscription.suspended",
        ("status_changed", "suspended", "active"): "subscription.resumed",
        ("status_changed", "past_due", "active"): "subscription.resumed",
        ("status_changed", "paused", "active"): "subscription.resumed",
        ("status_changed", "trialing", "active"): "subscription.updated",
        ("status_changed", "active", "paused"): "subscription.updated",
        ("status_changed", "active", "canceled"): "subscription.canceled",
        ("plan_changed", None, None): "subscription.updated",
        ("change_scheduled", None, None): "subscription.updated",
        ("cancel_scheduled", None, None): "subscription.updated",
        ("cancel_undone", None, None): "subscription.updated",
        ("period_started", None, None): "subscription.updated",
    }
    for (kind, before, after), expected in cases.items():
        assert emit.subscription_type(kind, before, after) == expected, (kind, before, after)


# -- once a period ------------------------------------------------------------------------------


async def test_thresholds_are_told_once_per_period_even_with_two_workers_looking_at_once(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    clock = await new_clock(webhook_client, operator, "2026-08-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(webhook_client, operator, test_clock_id=clock, name="Twice")
    await advance(webhook_client, operator, clock, "2026-08-20T00:00:00+08:00")
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        receiver.secret = endpoint.secret
        await _orders(webhook_client, tenant, "t-1", 3000, "2026-08-10T10:00:00+08:00")
        looks = await asyncio.gather(*(_watch(tenant.merchant_id) for _ in range(4)))
        assert sum(look.thresholds for look in looks) == 2  # 80% and 100%, once each
        await _orders(webhook_client, tenant, "t-2", 10, "2026-08-11T10:00:00+08:00")
        assert (await _watch(tenant.merchant_id)).thresholds == 0
        # The next period starts counting afresh.
        await advance(webhook_client, operator, clock, "2026-09-20T00:00:00+08:00")
        await close_pass(tenant.merchant_id)
        await _orders(webhook_client, tenant, "t-3", 2400, "2026-09-10T10:00:00+08:00")
        assert (await _watch(tenant.merchant_id)).thresholds == 1
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()
        thresholds = [
            e["data"]["threshold"]
            for e in receiver.events(tenant.merchant_id)
            if e["type"] == "usage.threshold_reached"
        ]
        assert [(t["percent"], t["orders"]) for t in thresholds] == [
            (80, "3000"),
            (100, "3000"),
            (80, "2400"),
        ]
    # The database, not a check in code, refuses a second one.
    async with current_database().engine.transaction():
        marks = [
            await emit.once(tenant.merchant_id, "usage_threshold:probe"),
            await emit.once(tenant.merchant_id, "usage_threshold:probe"),
        ]
    assert marks == [True, False]


async def test_a_threshold_crossed_before_anyone_listens_is_told_once_someone_does(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    clock = await new_clock(webhook_client, operator, "2026-08-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(webhook_client, operator, test_clock_id=clock, name="Quiet")
    await advance(webhook_client, operator, clock, "2026-08-20T00:00:00+08:00")
    await _orders(webhook_client, tenant, "q-1", 2500, "2026-08-10T10:00:00+08:00")
    seen: watch.Seen = {}
    now = datetime.now(UTC)
    quiet = await watch.run(now=now, tax_rate=0, seen=seen, merchant_ids=[tenant.merchant_id])
    assert quiet == watch.WatchSummary()  # nobody listens: not even looked at
    async with registered(
        webhook_client, operator, receiver.url, events=["invoice.paid"]
    ) as unrelated:
        receiver.secret = unrelated.secret
        look = await watch.run(now=now, tax_rate=0, seen=seen, merchant_ids=[tenant.merchant_id])
        assert look == watch.WatchSummary()  # listening, but not to thresholds
    assert not await OutgoingEvent.exists().where(OutgoingEvent.merchant_id == tenant.merchant_id)
    async with registered(
        webhook_client, operator, receiver.url, events=["usage.threshold_reached"]
    ) as endpoint:
        receiver.secret = endpoint.secret
        look = await watch.run(now=now, tax_rate=0, seen=seen, merchant_ids=[tenant.merchant_id])
        assert look.thresholds == 1  # 80%, still true, told now
        again = await watch.run(now=now, tax_rate=0, seen={}, merchant_ids=[tenant.merchant_id])
        assert again.thresholds == 0


async def test_a_trial_about_to_end_is_told_once_three_days_ahead(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    clock = await new_clock(webhook_client, operator, "2026-10-01T00:00:00+08:00")
    tenant, subscription = await signup_tenant(
        webhook_client, operator, trial_days=14, test_clock_id=clock, name="Trial shop"
    )
    async with registered(
        webhook_client, operator, receiver.url, events=["subscription.trial_will_end"]
    ) as endpoint:
        receiver.secret = endpoint.secret
        await advance(webhook_client, operator, clock, "2026-10-11T23:00:00+08:00")
        assert (await _watch(tenant.merchant_id)).trials_ending == 0  # 3 days and 1 hour ahead
        await advance(webhook_client, operator, clock, "2026-10-12T01:00:00+08:00")
        assert (await _watch(tenant.merchant_id)).trials_ending == 1
        assert (await _watch(tenant.merchant_id)).trials_ending == 0
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()
        [event] = receiver.events(tenant.merchant_id)
        assert event["type"] == "subscription.trial_will_end"
        assert event["data"]["object"]["trial_end"] == subscription["trial_end"].replace(
            "+00:00", "Z"
        )
        assert event["created"] == "2026-10-11T17:00:00Z"  # the merchant's clock


async def test_payment_method_required_is_ready_for_the_ways_to_pay_flow(
    webhook_client: httpx.AsyncClient, operator: Tenant, receiver: Receiver
) -> None:
    """Defined and emitted by one function; the ways-to-pay flow calls it where it finds that
    a merchant has no way to pay (nothing here pretends to be that place)."""
    tenant, _ = await signup_tenant(webhook_client, operator, name="No card shop")
    async with registered(
        webhook_client, operator, receiver.url, events=["payment_method.required"]
    ) as endpoint:
        receiver.secret = endpoint.secret
        async with current_database().engine.transaction():
            await emit.payment_method_required(
                tenant.merchant_id,
                at=datetime(2026, 10, 2, tzinfo=UTC),
                reason="invoice_due_without_payment_method",
                setup_url="https://billing.example.com/v1/pay/setup/abc",
            )
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()
        await deliverer.close()
        [event] = receiver.events()
        assert event["type"] == EventType.PAYMENT_METHOD_REQUIRED
        assert event["data"]["object"]["id"] == str(tenant.merchant_id)
        assert event["data"]["object_type"] == "merchant"
        assert event["data"]["setup_url"].endswith("/abc")


# -- endpoints and their secret ------------------------------------------------------------------


async def test_registration_checks_the_url_and_the_event_types(
    client: httpx.AsyncClient, operator: Tenant
) -> None:
    """The default app: no allowance for private addresses."""
    for url, words in (
        ("http://127.0.0.1:9000/hooks", "loopback"),
        ("https://10.0.0.8/hooks", "private"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://[::ffff:192.168.0.1]/hooks", "private"),
        ("https://localhost/hooks", "this machine"),
        ("ftp://platform.example.com/hooks", "https://"),
        ("https://user:pw@platform.example.com/hooks", "user or password"),
    ):
        answer = await client.post(
            "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=operator.headers
        )
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["field"] == "url"
        assert words in answer.json()["detail"], (url, answer.json()["detail"])
    unknown = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://platform.example.com/h", "events": ["invoice.exploded"]},
        headers=operator.headers,
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "events"
    nothing = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://platform.example.com/h", "events": []},
        headers=operator.headers,
    )
    assert nothing.status_code == 400


async def test_production_mode_takes_https_endpoints_only(
    settings: Any, operator: Tenant, database: Any
) -> None:
    from service.app import create_app
    from service.settings import Settings

    production = Settings.from_env(
        {"BILLING_ENV": "production", "DATABASE_URL": settings.database.url}
    )
    assert production.outgoing.requires_https
    transport = httpx.ASGITransport(app=create_app(production))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        plain = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://platform.example.com/hooks", "events": ["*"]},
            headers=operator.headers,
        )
        assert plain.status_code == 422
        assert "https in production" in plain.json()["detail"]
        private = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://192.168.1.20/hooks", "events": ["*"]},
            headers=operator.headers,
        )
        assert private.status_code == 422
        assert "private" in private.json()["detail"]
    billing_logging.configure(log_format="console", force=True)  # the app set up JSON logs


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    billing_logging.configure(log_format="json", force=True, stream=stream)
    yield stream
    billing_logging.configure(log_format="console", force=True)


async def test_the_secret_is_shown_once_and_never_again_nor_in_any_log(
    webhook_client: httpx.AsyncClient,
    operator: Tenant,
    receiver: Receiver,
    json_logs: io.StringIO,
) -> None:
    async with registered(webhook_client, operator, receiver.url) as endpoint:
        secret = endpoint.secret
        assert secret.startswith("whsec_")
        assert len(secret) > 40
        receiver.secret = secret
        tenant, subscription = await signup_tenant(webhook_client, operator, name="Secret shop")
        deliverer = Deliverer([endpoint.id])
        await deliverer.run()  # delivered
        receiver.status = 500
        await webhook_client.post(
            f"/v1/subscriptions/{subscription['id']}/pause", headers=tenant.headers
        )
        await deliverer.run()  # failed
        receiver.stop()
        await deliverer.run(at=datetime.now(UTC) + 2 * HOUR)  # no connection
        [event] = await eventlog.events(merchant_id=tenant.merchant_id, limit=1)
        await eventlog.replay(event.id)
        await webhook_client.post(
            f"/v1/webhook-endpoints/{endpoint.id}/enable", headers=operator.headers
        )
        await deliverer.close()

        answers = [
            await webhook_client.get("/v1/webhook-endpoints", headers=operator.headers),
            await webhook_client.get(
                f"/v1/webhook-endpoints/{endpoint.id}", headers=operator.headers
            ),
            await webhook_client.get("/v1/webhook-events", headers=operator.headers),
            await webhook_client.get(f"/v1/webhook-events/{event.id}", headers=operator.headers),
            await webhook_client.get("/v1/audit-log", headers=operator.headers),
        ]
        assert all(answer.status_code == 200 for answer in answers)
        assert not any(secret in answer.text for answer in answers)
        assert "secret" not in answers[1].json()
        row = await WebhookEndpoint.objects().where(WebhookEndpoint.id == endpoint.id).first()
        assert row is not None
        assert row.signing_secret == secret
    logged = json_logs.getvalue()
    assert "webhook_delivered" in logged
    assert "webhook_delivery_failed" in logged
    assert secret not in logged
    assert secret[6:20] not in logged
    assert all(json.loads(line) for line in logged.splitlines() if line.startswith("{"))
