# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""A slow or hanging Stripe holds a worker, never a database lock: outbox rows are claimed with
a lease and committed before Stripe is called, the outcome is recorded afterwards, requests are
cut at ``STRIPE_TIMEOUT_SECONDS``, and ``Stripe-Should-Retry`` decides what is temporary.

Proved by structure, not by timing: while the stand-in holds a call, the test looks at
``pg_locks`` and ``pg_stat_activity`` and at what a second worker does meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from service.db.engine import Database
from service.db.tables import Merchant, StripeOutbox
from service.settings import StripeSettings
from tests.integration.conftest import Tenant, make_tenant
from tests.integration.stripe_helpers import relay, standin, stripe_objects  # noqa: F401
from webhooks import outbox
from webhooks.gateway import Gateway
from webhooks.standin import StandIn

# Sessions other than the test's own that hold any lock on the outbox table (a claimed row's
# FOR UPDATE shows as a RowShareLock on it for as long as its transaction lasts).
_OUTBOX_LOCK_HOLDERS = """
SELECT a.pid, a.state, l.mode
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.relation = 'stripe_outbox'::regclass AND l.pid <> pg_backend_pid()
"""
_IDLE_IN_TRANSACTION = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state LIKE 'idle in transaction%'
"""


def _gateway(standin: StandIn, **settings: float) -> Gateway:
    return Gateway.from_settings(
        StripeSettings(api_key="sk_test_standin", api_base=standin.base_url, **settings)
    )


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for something another thread does (a bounded wait, not a measurement)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came true")


async def _customer_row(tenant: Tenant) -> StripeOutbox:
    row = (
        await StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == tenant.merchant_id)
        .where(StripeOutbox.command == "customer.create")
        .first()
    )
    assert row is not None
    return row


async def test_no_outbox_lock_is_held_while_stripe_answers_and_another_worker_sends_meanwhile(
    database: Database, client: httpx.AsyncClient, standin: StandIn
) -> None:
    a, b = await make_tenant("Slow Stripe A"), await make_tenant("Slow Stripe B")
    gateway = _gateway(standin)
    standin.delay_answers(2.5)
    now = datetime.now(UTC)

    first = asyncio.create_task(outbox.send_one(gateway, now=now, merchant_ids=[a.merchant_id]))
    await _until(lambda: standin.faults.delayed_now == 1)  # A's call hangs in "Stripe"
    assert await database.pool.fetch(_OUTBOX_LOCK_HOLDERS) == []
    assert await database.pool.fetchval(_IDLE_IN_TRANSACTION) == 0
    claimed = await _customer_row(a)
    assert (claimed.status, claimed.attempts) == ("in_flight", 1)
    assert claimed.lease_until is not None

    # A second worker, free to take either merchant: A's stream is in flight, so B's row.
    second = asyncio.create_task(
        outbox.send_one(gateway, now=now, merchant_ids=[a.merchant_id, b.merchant_id])
    )
    await _until(lambda: standin.faults.delayed_now == 2)
    assert not first.done()
    assert (await _customer_row(b)).status == "in_flight"
    assert await database.pool.fetch(_OUTBOX_LOCK_HOLDERS) == []
    assert await database.pool.fetchval(_IDLE_IN_TRANSACTION) == 0

    # The API answers meanwhile, from the same pool.
    for tenant in (a, b, a, b):
        response = await client.get("/v1/merchants/me", headers=tenant.headers)
        assert response.status_code == 200, response.text
    assert not first.done()

    assert await first == "sent"
    assert await second == "sent"
    for tenant in (a, b):
        row = await _customer_row(tenant)
        assert (row.status, row.lease_until) == ("sent", None)
        merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
        assert merchant is not None
        [customer] = stripe_objects(standin, "customer", tenant.merchant_id)
        assert merchant.stripe_customer_id == customer["id"]


async def test_a_row_whose_worker_died_is_sent_again_once_its_lease_runs_out(
    database: Database, standin: StandIn
) -> None:
    tenant = await make_tenant("Lost worker")
    gateway = _gateway(standin)
    standin.delay_answers(1.0)
    now = datetime.now(UTC)
    lease = timedelta(minutes=5)
    dying = asyncio.create_task(
        outbox.send_one(gateway, now=now, merchant_ids=[tenant.merchant_id], lease=lease)
    )
    await _until(lambda: standin.faults.delayed_now == 1)
    dying.cancel()  # the worker is gone; its request still reaches Stripe
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    standin.delay_answers(0)
    assert (await _customer_row(tenant)).status == "in_flight"

    # Within the lease nobody else touches it, and nothing behind it in its stream goes first.
    later = now + timedelta(minutes=1)
    assert await outbox.send_one(gateway, now=later, merchant_ids=[tenant.merchant_id]) is None
    # After the lease any worker takes it; its idempotency key makes the resend harmless.
    after = now + lease + timedelta(seconds=1)
    sent = await outbox.send_one(gateway, now=after, merchant_ids=[tenant.merchant_id])
    assert sent == "sent"
    await _until(lambda: standin.faults.delayed_now == 0)
    row = await _customer_row(tenant)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(stripe_objects(standin, "customer", tenant.merchant_id)) == 1


async def test_a_call_slower_than_the_configured_timeout_is_cut_and_retried_later(
    database: Database, standin: StandIn
) -> None:
    tenant = await make_tenant("Timed out")
    standin.delay_answers(2.0)
    now = datetime.now(UTC)
    outcome = await outbox.send_one(
        _gateway(standin, timeout_seconds=0.5), now=now, merchant_ids=[tenant.merchant_id]
    )
    assert outcome == "retrying"
    row = await _customer_row(tenant)
    assert (row.status, row.lease_until, row.attempts) == ("pending", None, 1)
    assert "network" in (row.last_error or "")
    assert row.next_attempt_at > now


async def test_stripe_should_retry_decides_over_the_status_code(
    database: Database, standin: StandIn
) -> None:
    refused, retried = await make_tenant("Do not retry"), await make_tenant("Retry")
    gateway = _gateway(standin)
    now = datetime.now(UTC)
    # A 503 Stripe says not to retry (it would change nothing) parks the row for a person.
    standin.fail_next(1, status=503, should_retry=False)
    assert await outbox.send_one(gateway, now=now, merchant_ids=[refused.merchant_id]) == "parked"
    # A 400 Stripe says to retry (a lock timeout on its side) is temporary.
    standin.fail_next(1, status=400, should_retry=True)
    assert await outbox.send_one(gateway, now=now, merchant_ids=[retried.merchant_id]) == (
        "retrying"
    )
    assert (await _customer_row(refused)).status == "parked"
    assert (await _customer_row(retried)).status == "pending"
