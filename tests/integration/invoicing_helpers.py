"""Shared steps for the invoicing tests: a test clock, signups on it, moving it, closing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from httpx import AsyncClient

from service.invoicing import close
from tests.integration.conftest import Tenant


async def new_clock(client: AsyncClient, operator: Tenant, at: str) -> str:
    response = await client.post(
        "/v1/test-clocks", json={"frozen_time": at, "name": "invoicing"}, headers=operator.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def advance(client: AsyncClient, operator: Tenant, clock_id: str, to: str) -> None:
    response = await client.post(
        f"/v1/test-clocks/{clock_id}/advance", json={"frozen_time": to}, headers=operator.headers
    )
    assert response.status_code == 200, response.text


async def close_pass(merchant_id: Any = None) -> close.CloseSummary:
    """A close pass as the worker runs it; test-clock merchants live at their clock's time."""
    return await close.run_pass(
        system_now=datetime.now(UTC),
        grace=timedelta(hours=48),
        tax_rate=Decimal(0),
        merchant_id=merchant_id,
    )


async def invoices_of(client: AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    listed = await client.get("/v1/invoices", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    full = []
    for item in sorted(listed.json(), key=lambda i: (i["created_at"], i["number"])):
        one = await client.get(f"/v1/invoices/{item['id']}", headers=tenant.headers)
        assert one.status_code == 200
        full.append(one.json())
    return full


def amounts(invoice: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(line["kind"], line["charge_code"], line["amount_minor"]) for line in invoice["lines"]]
