"""Shared steps for the invoicing tests: a test clock, signups on it, moving it, closing."""

from __future__ import annotations

import re
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


NUMBER = re.compile(r"^KB-([0-9A-HJKMNP-TV-Z]{4,8})-(\d{6,})$")


def numbered(invoices: list[dict[str, Any]]) -> tuple[str, list[int]]:
    """The merchant's prefix (one for all its invoices) and each invoice's sequence number."""
    parts = [NUMBER.match(invoice["number"]) for invoice in invoices]
    assert all(parts), [invoice["number"] for invoice in invoices]
    prefixes = {part.group(1) for part in parts if part}
    assert len(prefixes) == 1, prefixes
    return prefixes.pop(), [int(part.group(2)) for part in parts if part]


def amounts(invoice: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(line["kind"], line["charge_code"], line["amount_minor"]) for line in invoice["lines"]]


INVOICE_FIELDS = (
    "kind", "plan_code", "plan_version", "currency", "period_start", "period_end",
    "subtotal_minor", "discounts_minor", "credits_minor", "tax_minor", "total_minor",
    "credit_balance_applied_minor", "credit_balance_carried_minor",
)  # fmt: skip
LINE_FIELDS = (
    "kind", "charge_code", "description", "quantity", "unit_price", "rate", "amount_minor",
    "currency", "period_start", "period_end", "explanation",
)  # fmt: skip


def as_previewed(invoice: dict[str, Any]) -> dict[str, Any]:
    """What a preview and the invoice the close made must agree on: every amount and every
    field of every line, in order, and the status (``open``, or ``paid`` when nothing is
    due). Not the number (taken when it is made), not ids or times of the making."""
    return {
        **{name: invoice[name] for name in INVOICE_FIELDS},
        "status": "paid" if invoice["status"] == "paid" else "open",
        "lines": [{name: line[name] for name in LINE_FIELDS} for line in invoice["lines"]],
    }


async def upcoming_of(client: AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    response = await client.get("/v1/invoices/upcoming", headers=tenant.headers)
    assert response.status_code == 200, response.text
    invoices: list[dict[str, Any]] = response.json()["invoices"]
    return invoices
