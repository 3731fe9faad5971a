"""Usage ingest: exactly-once per transaction id, duplicates and conflicts told apart, every
rejection reason named per event, batches with mixed results, the key's scope."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from httpx import AsyncClient

from service.db.engine import current as current_database
from service.tenancy.principal import Role
from tests.integration.conftest import Tenant, issue_key, make_tenant
from tests.integration.usage_helpers import (
    advance,
    at,
    counted,
    event,
    merchant_on_clock,
    send,
    send_batch,
    summary,
)

NOW = "2026-10-20T12:00:00"  # the merchants' test clock; they signed up on Oct 10, 09:00


@pytest.fixture
async def shop(client: AsyncClient, operator: Tenant) -> Tenant:
    tenant, _, clock_id = await merchant_on_clock(client, operator, "2026-10-10T09:00:00")
    await advance(client, operator, clock_id, NOW)
    return tenant


async def test_an_event_is_accepted_and_counted_in_its_period(
    client: AsyncClient, shop: Tenant
) -> None:
    response = await send(client, shop, event("ord-1", at("2026-10-15T08:00:00"), gmv=4_990))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert body["period_start"].startswith("2026-10-10T01:00:00")  # 09:00 Shanghai in UTC
    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"] == {
        "metric": "orders",
        "count": 1,
        "quantity": "1",
        "gmv_minor": 4_990,
    }


async def test_duplicate_transaction_id_is_counted_once_and_reported_duplicate(
    client: AsyncClient, shop: Tenant
) -> None:
    body = event("ord-dup", at("2026-10-15T08:00:00"), gmv=1_000, properties={"sku": "card-50"})
    assert (await send(client, shop, body)).status_code == 201
    for _ in range(3):
        again = await send(client, shop, body)
        assert again.status_code == 200, again.text
        assert again.json() == {"transaction_id": "ord-dup", "status": "duplicate"}
    # The same event written differently (another offset, "1.0", keys reordered) is the same.
    same = event(
        "ord-dup", "2026-10-15T00:00:00Z", quantity="1.0", gmv=1_000, properties={"sku": "card-50"}
    )
    assert (await send(client, shop, same)).status_code == 200
    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"]["count"] == 1
    totals = await counted(shop.merchant_id)
    assert totals.raw == totals.aggregated == (1, 1, 1_000)


async def test_same_id_with_different_content_is_a_conflict_and_not_counted(
    client: AsyncClient, shop: Tenant
) -> None:
    assert (await send(client, shop, event("ord-c", at("2026-10-15T08:00:00")))).status_code == 201
    for changed in (
        event("ord-c", at("2026-10-15T08:00:00"), quantity=2),
        event("ord-c", at("2026-10-15T08:00:01")),
        event("ord-c", at("2026-10-15T08:00:00"), gmv=100),
        event("ord-c", at("2026-10-15T08:00:00"), metric="support_hours"),
    ):
        response = await send(client, shop, changed)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["field"] == "transaction_id"
        assert problem["reason"] == "transaction_id_reused"
    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"]["quantity"] == "1"
    assert usage["by_metric"]["support_hours"]["count"] == 0


T = at("2026-10-15T08:00:00")
HOURS = {"metric": "support_hours"}
ID, QTY, AT = "transaction_id", "quantity", "occurred_at"
REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("empty id", event("", T), "invalid_transaction_id", ID),
    ("long id", event("x" * 201, T), "invalid_transaction_id", ID),
    ("slash in id", event("a/b", T), "invalid_transaction_id", ID),
    ("control char", event("a\nb", T), "invalid_transaction_id", ID),
    ("unknown metric", event("r1", T, metric="tickets"), "unknown_metric", "metric"),
    ("negative", event("r2", T, quantity=-1), "invalid_quantity", QTY),
    ("zero", event("r3", T, quantity=0), "invalid_quantity", QTY),
    ("not a number", event("r4", T, quantity="NaN"), "invalid_quantity", QTY),
    ("half an order", event("r5", T, quantity="1.5"), "fractional_quantity", QTY),
    ("absurd orders", event("r6", T, quantity=2_000_000), "quantity_too_large", QTY),
    ("absurd hours", event("r7", T, **HOURS, quantity=1000), "quantity_too_large", QTY),
    ("too precise", event("r8", T, **HOURS, quantity="0.00001"), "too_precise", QTY),
    ("naive time", event("r9", "2026-10-15T08:00:00"), "occurred_at_without_timezone", AT),
    ("future", event("r10", at("2026-10-20T12:06:00")), "occurred_in_future", AT),
    ("before start", event("r11", at("2026-10-10T08:59:59")), "before_subscription_start", AT),
    ("gmv on hours", event("r12", T, **HOURS, gmv=100), "gmv_not_allowed", "gmv"),
    (
        "other currency",
        event("r13", T, gmv=100, currency="USD"),
        "currency_mismatch",
        "gmv.currency",
    ),
    ("negative gmv", event("r14", T, gmv=-5), "invalid_gmv", "gmv.amount_minor"),
]


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [pytest.param(body, reason, field, id=name) for name, body, reason, field in REJECTIONS],
)
async def test_each_invalid_event_is_rejected_with_its_reason_and_field(
    client: AsyncClient, shop: Tenant, body: dict[str, Any], reason: str, field: str
) -> None:
    response = await send(client, shop, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["reason"], problem["field"]) == (reason, field)
    assert problem["detail"]
    assert (await counted(shop.merchant_id)).ledger == 0


async def test_within_the_clock_skew_is_accepted(client: AsyncClient, shop: Tenant) -> None:
    response = await send(client, shop, event("skew", at("2026-10-20T12:04:59")))
    assert response.status_code == 201, response.text


async def test_a_merchant_without_subscription_gets_no_subscription(
    client: AsyncClient, database: Any
) -> None:
    tenant = await make_tenant("No plan")
    response = await send(client, tenant, event("n1", "2026-10-15T08:00:00+08:00"))
    assert response.status_code == 422
    assert response.json()["reason"] == "no_subscription"


async def test_events_after_a_cancellation_are_refused_at_once(
    client: AsyncClient, shop: Tenant
) -> None:
    """The per-process copy of the subscription must not outlive a cancellation."""
    assert (await send(client, shop, event("c1", at("2026-10-18T08:00:00")))).status_code == 201
    subs = await client.get("/v1/subscriptions", headers=shop.headers)
    sub_id = subs.json()[0]["id"]
    canceled = await client.post(
        f"/v1/subscriptions/{sub_id}/cancel", json={"at_period_end": False}, headers=shop.headers
    )
    assert canceled.status_code == 200, canceled.text
    after = await send(client, shop, event("c2", at("2026-10-20T12:00:00")))
    assert after.status_code == 422, after.text
    assert after.json()["reason"] == "after_subscription_end"
    # Usage from before the cancellation is still late usage of the final period.
    late = await send(client, shop, event("c3", at("2026-10-19T08:00:00")))
    assert late.status_code == 201, late.text


async def test_malformed_bodies_are_refused_whole(client: AsyncClient, shop: Tenant) -> None:
    unknown_field = event("m1", at("2026-10-15T08:00:00"), colour="red")
    response = await send(client, shop, unknown_field)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "colour"
    too_many = [event(f"big-{i}", at("2026-10-15T08:00:00")) for i in range(10_001)]
    response = await client.post(
        "/v1/usage/events/batch", json={"events": too_many}, headers=shop.headers
    )
    assert response.status_code == 400
    assert (await counted(shop.merchant_id)).ledger == 0


async def test_a_batch_answers_per_event_and_stores_the_good_ones(
    client: AsyncClient, shop: Tenant
) -> None:
    assert (await send(client, shop, event("b-old", at("2026-10-11T08:00:00")))).status_code == 201
    assert (await send(client, shop, event("b-old2", at("2026-10-11T08:00:00")))).status_code == 201
    events = [
        event("b-1", at("2026-10-12T08:00:00"), gmv=1_500),
        event("b-2", at("2026-10-12T08:00:00"), metric="support_hours", quantity="1.5"),
        event("b-bad", at("2026-10-12T08:00:00"), quantity=-3),
        event("b-1", at("2026-10-12T08:00:00"), gmv=1_500),  # repeated in the batch
        event("b-2", at("2026-10-12T08:00:00"), metric="support_hours", quantity="2"),  # changed
        event("b-old", at("2026-10-11T08:00:00")),  # stored before
        event("b-old2", at("2026-10-11T09:00:00")),  # stored before, other content
        event("b-3", at("2026-10-31T08:00:00")),  # in the future
    ]
    body = await send_batch(client, shop, events)
    statuses = [
        (r["index"], r["transaction_id"], r["status"], r.get("reason")) for r in body["results"]
    ]
    assert statuses == [
        (0, "b-1", "accepted", None),
        (1, "b-2", "accepted", None),
        (2, "b-bad", "rejected", "invalid_quantity"),
        (3, "b-1", "duplicate", None),
        (4, "b-2", "conflict", "transaction_id_reused"),
        (5, "b-old", "duplicate", None),
        (6, "b-old2", "conflict", "transaction_id_reused"),
        (7, "b-3", "rejected", "occurred_in_future"),
    ]
    assert (body["accepted"], body["duplicates"], body["conflicts"], body["rejected"]) == (
        2,
        2,
        2,
        2,
    )
    assert body["results"][2]["field"] == "quantity"
    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"]["count"] == 3
    assert usage["by_metric"]["orders"]["gmv_minor"] == 1_500
    assert usage["by_metric"]["support_hours"]["quantity"] == "1.5"


async def test_resending_a_stored_batch_marks_every_event_duplicate(
    client: AsyncClient, shop: Tenant
) -> None:
    events = [event(f"r-{i:04d}", at("2026-10-15T08:00:00"), gmv=100 + i) for i in range(500)]
    first = await send_batch(client, shop, events)
    assert first["accepted"] == 500
    random.Random(7).shuffle(events)
    again = await send_batch(client, shop, events)
    assert again["duplicates"] == 500
    assert {r["status"] for r in again["results"]} == {"duplicate"}
    totals = await counted(shop.merchant_id)
    assert totals.raw == totals.aggregated == (500, 500, sum(100 + i for i in range(500)))


async def test_concurrent_senders_of_the_same_ids_count_each_once(
    client: AsyncClient, shop: Tenant
) -> None:
    ids = [f"cc-{i:04d}" for i in range(300)]

    async def sender(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        if seed % 2:
            for start in range(0, len(order), 60):
                chunk = order[start : start + 60]
                await send_batch(
                    client, shop, [event(t, at("2026-10-15T08:00:00"), gmv=10) for t in chunk]
                )
        else:
            for transaction_id in order[:40]:
                response = await send(
                    client, shop, event(transaction_id, at("2026-10-15T08:00:00"), gmv=10)
                )
                assert response.status_code in (200, 201), response.text

    await asyncio.gather(*(sender(seed) for seed in range(20)))
    totals = await counted(shop.merchant_id)
    assert totals.ledger == 300
    assert totals.raw == totals.aggregated == (300, 300, 3_000)


def _mixed(number: int) -> dict[str, Any]:
    """Event ``number`` of the mixed batch: orders with GMV, orders without, support hours with
    a fraction, some with properties, at different instants."""
    occurred = at(f"2026-10-{11 + number % 8:02d}T08:{number % 60:02d}:00.{number:06d}")
    if number % 3 == 0:
        return event(f"mix-{number:04d}", occurred, gmv=100 + number)
    if number % 3 == 1:
        return event(f"mix-{number:04d}", occurred, properties={"n": number, "k": "\u001f"})
    quantity = f"{number % 7 + 1}.25"
    return event(f"mix-{number:04d}", occurred, metric="support_hours", quantity=quantity)


async def test_a_batch_mixing_recorded_and_new_ids_stores_each_new_event_once_as_sent(
    client: AsyncClient, shop: Tenant
) -> None:
    """Some ids of the batch were stored before (every fifth, sent then with the same content):
    only the others are stored and counted, each row with its own values, not its neighbour's."""
    numbers = list(range(600))
    before = [_mixed(number) for number in numbers if number % 5 == 0]
    for start in range(0, len(before), 40):
        assert (await send_batch(client, shop, before[start : start + 40]))["accepted"] == 40
    shuffled = numbers[:]
    random.Random(11).shuffle(shuffled)
    body = await send_batch(client, shop, [_mixed(number) for number in shuffled])
    statuses = {r["transaction_id"]: r["status"] for r in body["results"]}
    assert statuses == {f"mix-{n:04d}": "duplicate" if n % 5 == 0 else "accepted" for n in numbers}
    rows = await current_database().pool.fetch(
        "SELECT transaction_id, metric, occurred_at, quantity, gmv_minor, properties"
        " FROM usage_events WHERE merchant_id = $1",
        shop.merchant_id,
    )
    stored = sorted(
        (
            row["transaction_id"],
            row["metric"],
            row["occurred_at"],
            str(row["quantity"]),
            row["gmv_minor"],
            msgspec.json.decode(row["properties"]) if row["properties"] else None,
        )
        for row in rows
    )
    sent = sorted(
        (
            sent_event["transaction_id"],
            sent_event["metric"],
            datetime.fromisoformat(sent_event["occurred_at"]),
            str(sent_event["quantity"]),
            sent_event["gmv"]["amount_minor"] if "gmv" in sent_event else None,
            sent_event.get("properties"),
        )
        for sent_event in map(_mixed, numbers)
    )
    assert stored == sent
    totals = await counted(shop.merchant_id)
    assert totals.ledger == 600
    assert totals.raw == totals.aggregated
    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"]["count"] == 400
    assert usage["by_metric"]["support_hours"]["count"] == 200
    assert Decimal(usage["by_metric"]["support_hours"]["quantity"]) == sum(
        Decimal(f"{n % 7 + 1}.25") for n in numbers if n % 3 == 2
    )
    assert usage["by_metric"]["orders"]["gmv_minor"] == sum(100 + n for n in numbers if n % 3 == 0)


async def test_usage_needs_the_usage_write_scope_and_a_merchant_key(
    client: AsyncClient, shop: Tenant, operator: Tenant
) -> None:
    read_only, _ = await issue_key(Role.MERCHANT, shop.merchant_id, ["billing:read"])
    headers = {"Authorization": f"Bearer {read_only}"}
    body = event("s1", at("2026-10-15T08:00:00"))
    assert (await client.post("/v1/usage/events", json=body, headers=headers)).status_code == 403
    assert (await client.get("/v1/usage/summary", headers=headers)).status_code == 200
    as_operator = await client.post("/v1/usage/events", json=body, headers=operator.headers)
    assert as_operator.status_code == 403
    assert (await client.post("/v1/usage/events", json=body)).status_code == 401


async def test_the_raw_event_keeps_what_was_sent(client: AsyncClient, shop: Tenant) -> None:
    body = event(
        "raw-1",
        at("2026-10-15T08:00:00.123456"),
        gmv=7_777,
        properties={"sku": "card-50", "channel": "淘宝", "note": "a\u001fb"},
    )
    assert (await send(client, shop, body)).status_code == 201
    row = await current_database().pool.fetchrow(
        "SELECT occurred_at, metric, quantity, gmv_minor, properties, period_start, voided_at"
        " FROM usage_events WHERE merchant_id = $1 AND transaction_id = 'raw-1'",
        shop.merchant_id,
    )
    assert row is not None
    assert row["occurred_at"] == datetime.fromisoformat(at("2026-10-15T08:00:00.123456"))
    assert (row["metric"], row["quantity"], row["gmv_minor"]) == ("orders", 1, 7_777)
    assert msgspec.json.decode(row["properties"]) == body["properties"]
    assert row["period_start"] == datetime.fromisoformat(at("2026-10-10T09:00:00"))
    assert row["voided_at"] is None
