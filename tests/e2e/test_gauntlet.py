"""The gauntlet (``billing bench gauntlet``): everything killed at any moment, then an audit.

The small one runs here: seeded, a few kills of each kind (API servers, workers, PostgreSQL),
Stripe outages, webhooks duplicated and shuffled; it must end with no discrepancy. The audit
itself is checked too: given a ledger that lost, doubled or invented something, it says so."""

from __future__ import annotations

import re
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from service.bench.gauntlet import audit
from service.bench.gauntlet.clients import Merchant, Tally
from tests.e2e.conftest import BILLING


def test_the_small_gauntlet_ends_with_every_event_invoice_and_push_accounted_for() -> None:
    finished = subprocess.run(
        [
            BILLING,
            *("bench", "gauntlet", "--seed", "7", "--duration", "25", "--kills", "9"),
            *("--outages", "2", "--merchants", "3", "--drain-seconds", "120"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    printed = finished.stdout
    assert finished.returncode == 0, printed + finished.stderr[-6000:]
    assert "discrepancies      none" in printed
    kills = re.search(r"API servers (\d+), workers (\d+), PostgreSQL (\d+)", printed)
    assert kills, printed
    assert all(int(count) >= 1 for count in kills.groups()), printed
    assert re.search(r"Stripe outages\s+2,", printed)
    acknowledged = re.search(r"usage\s+([\d,]+) events acknowledged of ([\d,]+) sent", printed)
    assert acknowledged, printed
    assert int(acknowledged.group(1).replace(",", "")) > 0
    assert acknowledged.group(1) == acknowledged.group(2)
    pushed = re.search(r"invoices\s+[\d,]+ \(([\d,]+) ended periods\); ([\d,]+) in Stripe", printed)
    assert pushed, printed
    assert int(pushed.group(1)) > 0
    assert int(pushed.group(2)) > 0
    # Ways to pay: some merchants saved a card through their payment-setup link and were
    # charged, the others were sent their invoices and paid them on Stripe's page.
    paid = re.search(
        r"([\d,]+) paid there \((\d+) merchants' by the card .*, ([\d,]+) sent", printed
    )
    assert paid, printed
    assert int(paid.group(1)) == int(pushed.group(2))
    assert int(paid.group(2)) >= 1
    assert int(paid.group(3)) >= 1
    assert printed.count("PostgreSQL kill ") == int(kills.group(3))
    # The schedule is printed before the run (seeded, so a failure can be run again).
    assert re.search(r"fault schedule \(seed 7\)", finished.stderr)


class _StandIn:
    """What the audit reads from the Stripe stand-in, made up."""

    def __init__(self, invoices: list[dict[str, Any]]) -> None:
        self.invoices = invoices

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return self.invoices if kind == "invoice" else []

    def events(self) -> list[dict[str, Any]]:
        return [{"id": "evt_never_delivered"}]

    def counts(self) -> dict[str, int]:
        return {"invoice": len(self.invoices)}


async def test_the_audit_reports_what_was_lost_invented_doubled_or_never_delivered(
    fresh_database_url: str,
) -> None:
    merchant = Merchant(id=str(uuid.uuid4()), key="-", tier="basic", prefix="m1")
    tally = Tally(
        sent={merchant.id: {"m1-1", "m1-2", "m1-3"}},
        acknowledged={merchant.id: {"m1-1", "m1-2"}},
    )
    connection = await asyncpg.connect(fresh_database_url)
    try:
        # Stored: one acknowledged event, and one no client ever sent; m1-2 is missing.
        for transaction_id in ("m1-1", "m1-9"):
            await connection.execute(
                "INSERT INTO usage_transactions (merchant_id, transaction_id, content_hash,"
                " occurred_at) VALUES ($1::uuid, $2, '\\x00', now())",
                merchant.id,
                transaction_id,
            )
        doubled = {"id": "in_1", "total": 100, "status": "open", "amount_paid": 0,
                   "metadata": {"kefu_invoice_id": "not-ours"}}  # fmt: skip
        found = await audit.audit(
            connection,
            _StandIn([doubled, {**doubled, "id": "in_2"}]),
            tally,
            [merchant],
            grace=timedelta(hours=48),
        )
    finally:
        await connection.close()
    said = "\n".join(found.discrepancies)
    assert "m1: acknowledged but not counted (1): m1-2" in said
    assert "m1: counted but never sent (1): m1-9" in said
    assert "m1: 0 raw events but 2 ledger rows" in said
    assert "invoices pushed to Stripe more than once (1): not-ours" in said
    assert "Stripe invoices that are none of ours: not-ours" in said
    assert "invoices still open in Stripe (a saved card never charged" in said
    assert "m1: 0 Stripe customers, not 1" in said
    assert "Stripe events that never reached the inbox (1): evt_never_delivered" in said
