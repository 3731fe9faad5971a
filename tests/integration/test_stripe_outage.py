# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Stripe down for a while: every push waits and retries with backoff, nothing is lost, nothing
is made twice in Stripe, and everything goes out once Stripe answers again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from service.db.tables import Invoice, StripeOutbox
from tests.integration.conftest import Tenant
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    relay,
    standin,
    stripe_client,
    stripe_objects,
    stripe_settings,
    sync,
)
from tests.integration.test_stripe_sync import invoiced_merchant
from webhooks.outbox import backoff


async def test_outage_loses_nothing_and_pushes_nothing_twice(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenants = [(await invoiced_merchant(stripe_client, operator, sync))[0] for _ in range(3)]
    sync.standin.start_outage(status=503)
    now = datetime.now(UTC)
    for hour in range(4):
        summary = await sync.stripe_sync.run_pass(
            now=now + timedelta(hours=hour), merchant_ids=sync.merchant_ids
        )
        assert summary.outbox.sent == 0
        assert summary.outbox.parked == 0
    rows = await StripeOutbox.objects().where(StripeOutbox.merchant_id.is_in(sync.merchant_ids))
    assert {row.status for row in rows} == {"pending"}
    firsts = [row for row in rows if row.command == "customer.create"]
    assert all(row.attempts >= 2 and "503" in (row.last_error or "") for row in firsts)
    # A merchant's invoice waits behind its customer: it was never tried.
    assert all(row.attempts == 0 for row in rows if row.command == "invoice.push")
    assert sync.standin.count("customer") == 0

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
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
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
    assert (await Invoice.objects().where(Invoice.id == invoice.id).first()).status == "paid"


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    waits = [backoff(n, rng=rng).total_seconds() for n in range(1, 14)]
    assert 1 <= waits[0] <= 2
    assert 2 <= waits[1] <= 4
    assert 4 <= waits[2] <= 8
    assert max(waits) <= 900
