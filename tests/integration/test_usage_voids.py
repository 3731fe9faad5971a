"""Voids: an event is taken back once, its id stays taken, its period's totals go down."""

from __future__ import annotations

import asyncio

from httpx import AsyncClient

from service.db.engine import current as current_database
from tests.integration.conftest import Tenant
from tests.integration.usage_helpers import (
    advance,
    at,
    counted,
    event,
    merchant_on_clock,
    send,
    summary,
)


async def _void(client: AsyncClient, tenant: Tenant, transaction_id: str) -> dict[str, object]:
    response = await client.post(f"/v1/usage/events/{transaction_id}/void", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_void_subtracts_the_event_once(client: AsyncClient, operator: Tenant) -> None:
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    await advance(client, operator, clock_id, "2026-10-20T00:00:00")
    for transaction_id, gmv in (("v-1", 1_000), ("v-2", 2_500)):
        body = event(transaction_id, at("2026-10-05T10:00:00"), quantity=3, gmv=gmv)
        assert (await send(client, shop, body)).status_code == 201

    first = await _void(client, shop, "v-2")
    assert first["was_already_voided"] is False
    again = await _void(client, shop, "v-2")
    assert again["was_already_voided"] is True
    assert again["voided_at"] == first["voided_at"]

    usage = await summary(client, shop)
    assert usage["by_metric"]["orders"] == {
        "metric": "orders",
        "count": 1,
        "quantity": "3",
        "gmv_minor": 1_000,
    }
    # The id stays taken: sending the event again is a duplicate, not a new count.
    resent = await send(
        client, shop, event("v-2", at("2026-10-05T10:00:00"), quantity=3, gmv=2_500)
    )
    assert resent.status_code == 200
    assert (await summary(client, shop))["by_metric"]["orders"]["count"] == 1
    totals = await counted(shop.merchant_id)
    assert totals.raw == totals.aggregated == (1, 3, 1_000)
    voided_at = await current_database().pool.fetchval(
        "SELECT voided_at FROM usage_events WHERE merchant_id = $1 AND transaction_id = 'v-2'",
        shop.merchant_id,
    )
    assert voided_at is not None


async def test_concurrent_voids_of_one_event_subtract_once(
    client: AsyncClient, operator: Tenant
) -> None:
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    await advance(client, operator, clock_id, "2026-10-20T00:00:00")
    for transaction_id in ("cv-1", "cv-2"):
        assert (
            await send(client, shop, event(transaction_id, at("2026-10-05T10:00:00")))
        ).status_code == 201
    answers = await asyncio.gather(*(_void(client, shop, "cv-1") for _ in range(10)))
    assert sorted(answer["was_already_voided"] for answer in answers) == [False] + [True] * 9
    totals = await counted(shop.merchant_id)
    assert totals.raw == totals.aggregated == (1, 1, 0)


async def test_voiding_a_late_event_lowers_its_ended_period(
    client: AsyncClient, operator: Tenant
) -> None:
    shop, _, clock_id = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    await advance(client, operator, clock_id, "2026-10-20T00:00:00")
    assert (
        await send(client, shop, event("lv-1", at("2026-10-05T10:00:00"), quantity=4))
    ).status_code == 201
    await advance(client, operator, clock_id, "2026-11-03T00:00:00")
    await _void(client, shop, "lv-1")
    assert (await summary(client, shop, "2026-10"))["by_metric"]["orders"]["quantity"] == "0"


async def test_voiding_an_unknown_id_is_not_found(client: AsyncClient, operator: Tenant) -> None:
    shop, _, _ = await merchant_on_clock(client, operator, "2026-10-01T00:00:00")
    response = await client.post("/v1/usage/events/nope-1/void", headers=shop.headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
