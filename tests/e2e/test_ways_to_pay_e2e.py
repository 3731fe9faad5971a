"""A merchant can actually pay, with the real processes: ``billing serve`` (which opens Stripe's
Checkout page for a payment-setup link and receives the stand-in's signed webhooks) and a
``billing worker`` (outbox, inbox, period close) against the Stripe stand-in, which refuses to
pay an invoice no card was saved for — as Stripe does.

- signup → the payment-setup link → Checkout (setup mode) completed as the merchant would → the
  webhooks → the card is the customer's invoice default → the first period's invoice (at the
  trial's end) is charged to it automatically and paid;
- a merchant who never saves a card gets its invoice sent, with a payment link, and stays active
  (nothing is dunned for lacking a card);
- a custom contract paying by bank transfer gets its invoice sent, due in its own 30 days.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    ServerProcess,
    WorkerProcess,
    printed_key,
    save_card,
    start_server,
    start_worker,
    stripe_env,
    wait_for,
)
from webhooks.standin import StandIn

SECRET = "whsec_e2e_" + "3" * 20


@pytest.fixture
def paying_world(fresh_database_url: str) -> Iterator[tuple[ServerProcess, StandIn]]:
    standin = StandIn.start(port=0, webhook_secret=SECRET)
    env = stripe_env(standin, SECRET)
    server = start_server(fresh_database_url, extra_env=env)
    standin.webhooks.url = f"{server.base_url}/webhooks/stripe"
    worker: WorkerProcess = start_worker(fresh_database_url, "--interval", "0.2", extra_env=env)
    yield server, standin
    worker.process.terminate()
    worker.process.wait(timeout=15)
    standin.stop()
    server.stop()


def _signup(http: httpx.Client, operator: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    made = http.post(
        "/v1/signup",
        json=body,
        headers={**operator, "Idempotency-Key": f"e2e-pay-{body['merchant']['contact_email']}"},
    )
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _key(made: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {made['api_key']['key']}"}


def _invoices(http: httpx.Client, key: dict[str, str]) -> list[dict[str, Any]]:
    listed = http.get("/v1/invoices", headers=key)
    assert listed.status_code == 200, listed.text
    return [http.get(f"/v1/invoices/{i['id']}", headers=key).json() for i in listed.json()]


def test_a_card_saved_at_signup_pays_the_first_invoice_and_without_one_invoices_are_sent(
    paying_world: tuple[ServerProcess, StandIn],
) -> None:
    server, standin = paying_world
    operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        clock = http.post(
            "/v1/test-clocks",
            json={"frozen_time": "2026-03-10T00:00:00+08:00", "name": "e2e ways to pay"},
            headers=operator,
        )
        assert clock.status_code == 201, clock.text
        clock_id = clock.json()["id"]

        # 1. A card saved through the signup's link pays the first period's invoice.
        carded = _signup(
            http,
            operator,
            {
                "merchant": {"name": "Card shop", "contact_email": "card@shop.cn"},
                "plan": "basic",
                "trial_days": 14,
                "test_clock_id": clock_id,
            },
        )
        setup_url = carded["payment_setup"]["url"]
        assert setup_url.startswith(f"{server.base_url}/v1/pay/setup/ps_"), setup_url
        save_card(http, setup_url, standin, card="tok_mastercard")
        me = wait_for(
            "the saved card to be recorded",
            lambda: (
                found
                if (found := http.get("/v1/merchants/me", headers=_key(carded)).json())[
                    "can_be_charged"
                ]
                else None
            ),
        )
        card = me["default_payment_method"]
        assert (card["card_brand"], card["card_last4"]) == ("mastercard", "4444")

        # The trial ends: the worker invoices the first paid period, and Stripe charges it.
        advanced = http.post(
            f"/v1/test-clocks/{clock_id}/advance",
            json={"frozen_time": "2026-03-25T00:00:00+08:00"},
            headers=operator,
        )
        assert advanced.status_code == 200, advanced.text
        [charged] = wait_for(
            "the first invoice to be charged and paid",
            lambda: [i for i in _invoices(http, _key(carded)) if i["status"] == "paid"],
        )
        assert charged["collection_method"] == "charge_automatically"
        assert charged["payments"][0]["amount_minor"] == charged["total_minor"] > 0
        [stripe_charge] = [
            c for c in standin.objects("charge") if c["amount"] == charged["total_minor"]
        ]
        assert stripe_charge["payment_method"] == card["id"]

        # 2. One who never saves a card, and 3. a custom contract paying by bank transfer, both
        # signed up once the clock stands still: their first invoices are finalized now, so
        # they are due 14 and 30 days from now whenever the worker gets to them (signed up
        # before the advance, a first invoice made before it would already be overdue).
        uncarded = _signup(
            http,
            operator,
            {
                "merchant": {"name": "No card shop", "contact_email": "nocard@shop.cn"},
                "plan": "basic",
                "trial_days": 0,
                "test_clock_id": clock_id,
            },
        )
        contract = _signup(
            http,
            operator,
            {
                "merchant": {"name": "Contract shop", "contact_email": "contract@shop.cn"},
                "plan": "custom",
                "test_clock_id": clock_id,
                "contract_overrides": {"orders": {"unit_price": "0.15"}},
                "payment_terms": {"collection": "send_invoice", "days_until_due": 30},
            },
        )

        sent = wait_for(
            "the uncarded merchant's invoice to be sent",
            lambda: [i for i in _invoices(http, _key(uncarded)) if i["collection_method"]],
        )
        [invoice] = sent
        assert (invoice["status"], invoice["collection_method"]) == ("open", "send_invoice")
        assert invoice["payment_url"].startswith(f"{standin.base_url}/_standin/hosted/in_")
        assert http.get(invoice["payment_url"]).status_code == 200
        due = datetime.fromisoformat(invoice["due_at"])
        assert due - datetime.fromisoformat(invoice["finalized_at"]) == timedelta(days=14)
        subscription = http.get("/v1/subscriptions", headers=_key(uncarded)).json()[0]
        assert subscription["status"] == "active"  # no card is no failure

        [by_transfer] = wait_for(
            "the contract's invoice to be sent",
            lambda: [i for i in _invoices(http, _key(contract)) if i["collection_method"]],
        )
        assert by_transfer["collection_method"] == "send_invoice"
        due = datetime.fromisoformat(by_transfer["due_at"])
        assert due - datetime.fromisoformat(by_transfer["finalized_at"]) == timedelta(days=30)
        stripe_invoice = next(
            i
            for i in standin.objects("invoice")
            if i["metadata"].get("kefu_invoice_id") == by_transfer["id"]
        )
        assert stripe_invoice["collection_method"] == "send_invoice"
        assert (
            stripe_invoice["due_date"] - stripe_invoice["status_transitions"]["finalized_at"]
            == 30 * 86400
        )

    assert not [line for line in server.output if "unhandled_error" in line]
