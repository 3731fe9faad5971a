"""The Stripe sync under test: the stand-in on loopback, its webhooks relayed into the app
(in-process, through the real ``POST /webhooks/stripe`` with the real signature check), and a
worker's Stripe pass run until nothing moves."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar import Litestar

from service.app import create_app
from service.db.engine import Database
from service.settings import Settings, StripeSettings
from tests.webhook_receiver import Receiver, receiving
from webhooks.gateway import Gateway
from webhooks.payment_pages import StripeHostedPages
from webhooks.standin import StandIn
from webhooks.sync import StripeSync

WEBHOOK_SECRET = "whsec_kefu_tests"


def customer_event(event_id: str, **fields: Any) -> dict[str, Any]:
    """A ``customer.updated`` event about nobody, created now; ``fields`` add or replace."""
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_nobody", "object": "customer"}},
        **fields,
    }


@pytest.fixture
def relay() -> Iterator[Receiver]:
    """Where the stand-in posts webhooks; `Sync.deliver` hands them to the app (the app runs in
    the test's event loop, not behind a socket)."""
    with receiving() as running:
        yield running


@pytest.fixture
def standin(relay: Receiver) -> Iterator[StandIn]:
    running = StandIn.start(
        port=0, webhook_url=relay.url, webhook_secret=WEBHOOK_SECRET, timeout_seconds=0.2
    )
    running.webhooks.retry_backoff_seconds = 0.01
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stripe_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        stripe=StripeSettings(webhook_secret=WEBHOOK_SECRET, webhook_tolerance_seconds=300),
    )


@pytest.fixture(scope="session")
def stripe_app(stripe_settings: Settings, database: Database) -> Litestar:
    """The app configured with the webhook secret; each test's `sync` points its Stripe pages
    (Checkout, the portal) at that test's stand-in."""
    return create_app(stripe_settings)


@pytest.fixture(scope="session")
async def stripe_client(stripe_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app configured with the webhook secret, in this event loop."""
    transport = httpx.ASGITransport(app=stripe_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass
class Sync:
    """A worker's Stripe pass against the stand-in, plus the webhook relay into the app."""

    standin: StandIn
    relay: Receiver
    client: httpx.AsyncClient
    stripe_sync: StripeSync
    merchant_ids: list[UUID] = field(default_factory=list)
    hold_webhooks: bool = False
    include_catalog: bool = False
    skew: timedelta = timedelta(0)

    async def deliver(self) -> int:
        """Hand every webhook the stand-in sent so far to the app; each must be accepted."""
        self.standin.webhooks.wait_idle(timeout=5)
        delivered = 0
        for webhook in self.relay.take():
            response = await self.client.post(
                "/webhooks/stripe",
                content=webhook.body,
                headers={
                    "Stripe-Signature": webhook.headers["Stripe-Signature"],
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 200, response.text
            delivered += 1
        return delivered

    async def settle(self, *, rounds: int = 30, now: datetime | None = None) -> None:
        """Worker passes and webhook deliveries until nothing moves. ``now`` moves forward an
        hour a round, so backoffs have passed (dunning retries are days apart: they wait)."""
        base = now or datetime.now(UTC)
        for round_no in range(rounds):
            summary = await self.stripe_sync.run_pass(
                now=base + self.skew + timedelta(hours=round_no),
                merchant_ids=self.merchant_ids,
                include_catalog=self.include_catalog,
            )
            delivered = 0 if self.hold_webhooks else await self.deliver()
            if summary.is_idle and not delivered:
                return
        raise AssertionError("the Stripe sync did not settle")


@pytest.fixture
def sync(
    standin: StandIn, relay: Receiver, stripe_client: httpx.AsyncClient, stripe_app: Litestar
) -> Iterator[Sync]:
    gateway = Gateway(standin.sdk_client())
    stripe_app.state["payment_pages"] = StripeHostedPages(gateway)
    yield Sync(
        standin=standin,
        relay=relay,
        client=stripe_client,
        stripe_sync=StripeSync(StripeSettings(), gateway=gateway),
    )
    stripe_app.state["payment_pages"] = None


async def add_card(sync: Sync, merchant_id: UUID, card: str = "tok_visa") -> str:
    """A card saved for the merchant's invoices, as a person would add it in the Stripe
    dashboard (the customer pushed first); our record follows from the webhooks. Its id."""
    from service.db.tables import Merchant

    if merchant_id not in sync.merchant_ids:
        sync.merchant_ids.append(merchant_id)
    await sync.settle()
    merchant = await Merchant.objects().where(Merchant.id == merchant_id).first()
    assert merchant is not None
    assert merchant.stripe_customer_id, "the customer was not pushed"
    method = sync.standin.dashboard.attach_card(merchant.stripe_customer_id, card=card)
    await sync.settle()
    merchant = await Merchant.objects().where(Merchant.id == merchant_id).first()
    assert merchant is not None
    assert merchant.default_payment_method_id == method["id"]
    return str(method["id"])


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def stripe_objects(standin: StandIn, kind: str, merchant_id: UUID) -> list[dict[str, Any]]:
    """Stripe-side objects of one merchant (by the metadata we put on them)."""
    return [
        obj
        for obj in standin.objects(kind)
        if (obj.get("metadata") or {}).get("kefu_merchant_id") == str(merchant_id)
    ]


def stripe_refunds(standin: StandIn, merchant_id: UUID) -> list[dict[str, Any]]:
    """Stripe refunds of one merchant's charges (a refund a credit note makes carries no
    metadata of ours: it is found through the charge's customer)."""
    customers = {c["id"] for c in stripe_objects(standin, "customer", merchant_id)}
    charges = {c["id"] for c in standin.objects("charge") if c["customer"] in customers}
    return [r for r in standin.objects("refund") if r["charge"] in charges]
