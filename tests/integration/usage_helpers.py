"""Helpers for the usage tests: merchants on a test clock, events, raw and aggregate totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from httpx import AsyncClient

from service.db.engine import current as current_database
from tests.integration import invoicing_helpers
from tests.integration.conftest import Tenant, signup_tenant

SHANGHAI = "+08:00"


def at(text: str) -> str:
    """A Shanghai wall time as an ISO instant."""
    return f"{text}{SHANGHAI}"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(at(text))


async def new_clock(client: AsyncClient, operator: Tenant, start: str) -> str:
    """A test clock frozen at ``start`` (Shanghai wall time)."""
    return await invoicing_helpers.new_clock(client, operator, at(start))


async def advance(client: AsyncClient, operator: Tenant, clock_id: str, to: str) -> None:
    """Move the clock to ``to`` (Shanghai wall time)."""
    await invoicing_helpers.advance(client, operator, clock_id, at(to))


async def merchant_on_clock(
    client: AsyncClient, operator: Tenant, start: str, *, plan: str = "basic", **extra: Any
) -> tuple[Tenant, dict[str, Any], str]:
    """A merchant that signed up (no trial) at ``start`` (Shanghai) on its own test clock."""
    clock_id = await new_clock(client, operator, start)
    tenant, subscription = await signup_tenant(
        client, operator, plan=plan, trial_days=0, test_clock_id=clock_id, **extra
    )
    return tenant, subscription, clock_id


def event(
    transaction_id: str,
    occurred_at: str,
    *,
    metric: str = "orders",
    quantity: int | str = 1,
    gmv: int | None = None,
    currency: str = "CNY",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": transaction_id,
        "metric": metric,
        "occurred_at": occurred_at,
        "quantity": quantity,
        **extra,
    }
    if gmv is not None:
        body["gmv"] = {"amount_minor": gmv, "currency": currency}
    return body


async def send(client: AsyncClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return await client.post("/v1/usage/events", json=body, headers=tenant.headers)


async def send_batch(client: AsyncClient, tenant: Tenant, events: list[dict[str, Any]]) -> Any:
    response = await client.post(
        "/v1/usage/events/batch", json={"events": events}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def summary(client: AsyncClient, tenant: Tenant, period: str = "current") -> dict[str, Any]:
    response = await client.get(
        "/v1/usage/summary", params={"period": period}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["by_metric"] = {row["metric"]: row for row in body["metrics"]}
    return body


@dataclass(frozen=True)
class Counted:
    """(events, quantity, gmv) from raw unvoided events and from the aggregates, and the
    number of unvoided transaction ids in the ledger."""

    raw: tuple[int, int, int]
    aggregated: tuple[int, int, int]
    ledger: int


async def counted(merchant_id: UUID) -> Counted:
    pool = current_database().pool
    raw = await pool.fetchrow(
        "SELECT count(*), coalesce(sum(quantity), 0)::bigint, coalesce(sum(gmv_minor), 0)::bigint"
        " FROM usage_events WHERE merchant_id = $1 AND voided_at IS NULL",
        merchant_id,
    )
    aggregated = await pool.fetchrow(
        "SELECT coalesce(sum(event_count), 0)::bigint, coalesce(sum(quantity), 0)::bigint,"
        " coalesce(sum(gmv_minor), 0)::bigint FROM usage_aggregates WHERE merchant_id = $1",
        merchant_id,
    )
    ledger = await pool.fetchval(
        "SELECT count(*) FROM usage_transactions WHERE merchant_id = $1 AND voided_at IS NULL",
        merchant_id,
    )
    assert raw is not None
    assert aggregated is not None
    return Counted(raw=tuple(raw), aggregated=tuple(aggregated), ledger=ledger)
