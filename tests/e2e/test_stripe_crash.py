"""A worker killed between Stripe's refund and our record of it: the real processes, SIGKILL.

``billing serve`` receives the stand-in's webhooks; a ``billing worker`` sends the credit note
of a paid invoice and is killed while Stripe is carrying the request out (the stand-in holds it,
the test kills the worker, then lets Stripe finish: the credit note and its refund exist, nobody
heard). The row stays in flight until its lease runs out; the next worker sends it again with
the same idempotency key, and Stripe answers what it did. One refund, one credit note."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import asyncpg
import httpx

from tests.e2e.conftest import (
    WorkerProcess,
    printed_key,
    save_card,
    start_server,
    start_worker,
    wait_for,
)
from tests.e2e.conftest import stripe_env as stripe_settings
from webhooks.standin import StandIn

SECRET = "whsec_e2e_" + "2" * 20


def test_a_worker_killed_while_stripe_refunds_leaves_one_refund_and_its_credit_note(
    fresh_database_url: str,
) -> None:
    standin = StandIn.start(port=0, webhook_secret=SECRET)
    server = start_server(fresh_database_url, extra_env=stripe_settings(standin, SECRET))
    standin.webhooks.url = f"{server.base_url}/webhooks/stripe"
    stripe_env = {**stripe_settings(standin, SECRET), "STRIPE_OUTBOX_LEASE_SECONDS": "3"}
    workers: list[WorkerProcess] = []
    try:
        workers.append(start_worker(fresh_database_url, "--interval", "0.2", extra_env=stripe_env))
        operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            clock = http.post(
                "/v1/test-clocks",
                json={"frozen_time": "2026-03-10T00:00:00+08:00", "name": "crash"},
                headers=operator,
            ).json()["id"]
            made = http.post(
                "/v1/signup",
                json={
                    "merchant": {"name": "Crash shop", "contact_email": "crash@shop.cn"},
                    "plan": "basic",
                    "trial_days": 0,
                    "test_clock_id": clock,
                },
                headers={**operator, "Idempotency-Key": "e2e-crash-signup"},
            )
            assert made.status_code == 201, made.text
            merchant = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
            save_card(http, made.json()["payment_setup"]["url"], standin)  # what Stripe charges

            def paid_invoice() -> dict[str, Any] | None:
                listed = http.get("/v1/invoices", headers=merchant).json()
                return listed[0] if listed and listed[0]["status"] == "paid" else None

            invoice = wait_for("the first invoice to be paid", paid_invoice)

            held = standin.hold_next(method="POST", path_prefix="/v1/credit_notes")
            noted = http.post(
                f"/v1/invoices/{invoice['id']}/credit-notes",
                json={"amount_minor": 1000, "reason": "sla_credit", "memo": "outage"},
                headers=operator,
            )
            assert noted.status_code == 201, noted.text
            assert held.arrived.wait(60), "the worker never sent the credit note"
            workers[0].process.send_signal(signal.SIGKILL)
            workers[0].process.wait()
            held.release()  # Stripe carries it out; the worker that asked is gone
            wait_for("Stripe to make the credit note", lambda: standin.count("credit_note"))
            assert standin.count("refund") == 1

            workers.append(
                start_worker(fresh_database_url, "--interval", "0.2", extra_env=stripe_env)
            )

            def refunded() -> bool:
                detail = http.get(f"/v1/invoices/{invoice['id']}", headers=merchant).json()
                return [n["refund_status"] for n in detail["credit_notes"]] == ["refunded"]

            # The refund's webhook (its request's key names our credit note) may record it
            # first; the row is sent again once its lease is over, and finds what Stripe did.
            wait_for("the credit note to be recorded as refunded", refunded)
            row = wait_for(
                "the push to be sent again",
                lambda: (
                    (found := asyncio.run(_credit_note_row(fresh_database_url)))["status"] == "sent"
                    and found
                ),
            )
        assert row["attempts"] == 2
        assert row["stripe_credit_note_id"] is not None
        assert (standin.count("refund"), standin.count("credit_note")) == (1, 1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.process.terminate()
                worker.process.wait(timeout=15)
        standin.stop()
        server.stop()


async def _credit_note_row(database_url: str) -> asyncpg.Record:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchrow(
            "SELECT o.status, o.attempts, n.stripe_credit_note_id FROM stripe_outbox o"
            " JOIN credit_notes n ON n.merchant_id = o.merchant_id"
            " AND n.id = (o.payload ->> 'credit_note_id')::uuid"
            " WHERE o.command = 'credit_note.push'"
        )
    finally:
        await connection.close()
