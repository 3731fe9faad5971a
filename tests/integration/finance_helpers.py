"""A small book of three merchants on one test clock, shared by the finance tests.

A (basic + fast response) and B (advanced) sign up on 2026-03-01, C (basic) with a 14-day
trial; A drops the add-on on 03-20 and B cancels at period end (so on 04-01); C pauses on
04-10 and resumes on 04-20. A custom merchant D on its own clock orders 20,000 times with
¥350,000 of GMV in March. Periods are closed after each month's grace window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient

from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, new_clock


@dataclass
class Book:
    a: Tenant
    b: Tenant
    c: Tenant
    d: Tenant
    subscriptions: dict[str, str]

    @property
    def merchant_ids(self) -> list[Any]:
        return [self.a.merchant_id, self.b.merchant_id, self.c.merchant_id, self.d.merchant_id]


async def _post(client: AsyncClient, url: str, tenant: Tenant, body: Any = None) -> None:
    response = await client.post(url, json=body or {}, headers=tenant.headers)
    assert response.status_code == 200, response.text


async def build_book(client: AsyncClient, operator: Tenant) -> Book:
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    a, sub_a = await signup_tenant(client, operator, plan="basic", test_clock_id=clock,
                                   name="甲 Shop A", addons=["fast_response"])  # fmt: skip
    b, sub_b = await signup_tenant(client, operator, plan="advanced", test_clock_id=clock,
                                   name="乙 Shop B")  # fmt: skip
    c, sub_c = await signup_tenant(client, operator, plan="basic", test_clock_id=clock,
                                   name="丙 Shop C", trial_days=14)  # fmt: skip
    clock_d = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    d, sub_d = await signup_tenant(client, operator, plan="custom", test_clock_id=clock_d,
                                   name="丁 Shop D")  # fmt: skip

    await advance(client, operator, clock, "2026-03-20T00:00:00+08:00")
    await _post(client, f"/v1/subscriptions/{sub_a['id']}/add-ons", a, {"addons": []})
    await _post(client, f"/v1/subscriptions/{sub_b['id']}/cancel", b, {"at_period_end": True})
    await advance(client, operator, clock, "2026-04-10T00:00:00+08:00")
    await _post(client, f"/v1/subscriptions/{sub_c['id']}/pause", c)
    await advance(client, operator, clock, "2026-04-20T00:00:00+08:00")
    await _post(client, f"/v1/subscriptions/{sub_c['id']}/resume", c)

    await advance(client, operator, clock_d, "2026-03-31T23:59:00+08:00")
    events = [
        {"transaction_id": f"d-{n}", "metric": "orders", "occurred_at": "2026-03-10T10:00:00+08:00",
         "quantity": 1000, "gmv": {"amount_minor": 1_750_000, "currency": "CNY"}}
        for n in range(20)
    ]  # fmt: skip
    response = await client.post("/v1/usage/events/batch", json={"events": events},
                                 headers=d.headers)  # fmt: skip
    assert response.status_code == 200, response.text
    await advance(client, operator, clock_d, "2026-04-03T00:00:00+08:00")
    await close_pass(d.merchant_id)
    return Book(a, b, c, d, {"a": sub_a["id"], "b": sub_b["id"], "c": sub_c["id"],
                             "d": sub_d["id"]})  # fmt: skip


async def download(
    client: AsyncClient, operator: Tenant, kind: str, **params: Any
) -> tuple[bytes, Any]:
    # The book's merchants are on test clocks: test data, asked for explicitly.
    query = {"from": "2026-03-01", "to": "2026-04-30", "include_test": "true", **params}
    response = await client.get(
        f"/v1/finance/exports/{kind}", params=query, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    return response.content, response.headers
