"""The gauntlet's audit, once everything has drained: the ledger, the invoices and Stripe against
what the clients were told and what the Stripe stand-in holds. Each finding is a discrepancy;
there must be none.

- **Usage**: every acknowledged event counted exactly once (the exactly-once ledger, the raw
  events and the per-period totals all agree), and nothing counted that no client ever sent.
- **Invoices**: each ended period (past its grace window) has exactly one invoice, no invoice is
  left a draft, and each merchant's numbers run without a gap.
- **Stripe**: each invoice we push exists once in Stripe (objects counted on the stand-in, by
  our id in their metadata) with our amount, each merchant is one customer; each Stripe invoice
  Stripe says is paid is paid here once, for Stripe's amount, and each Stripe event reached the
  inbox and was processed (once: the inbox's key).
- **Drained**: no outbox row still to send or parked, no inbox event waiting or parked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from service.bench.gauntlet.clients import Merchant, Tally


@dataclass
class Findings:
    discrepancies: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(
        self, what: str, examples: list[Any] | None = None, *, count: int | None = None
    ) -> None:
        shown = "" if not examples else ": " + ", ".join(str(e) for e in examples[:5])
        more = "" if not examples or len(examples) <= 5 else f" (and {len(examples) - 5} more)"
        counted = f" ({count})" if count is not None else ""
        self.discrepancies.append(f"{what}{counted}{shown}{more}")


async def audit(
    connection: Any, standin: Any, tally: Tally, merchants: list[Merchant], *, grace: timedelta
) -> Findings:
    """Everything in the module's docstring, on an asyncpg ``connection``."""
    found = Findings()
    await _usage(connection, tally, merchants, found)
    await _invoices(connection, grace, found)
    await _stripe(connection, standin, merchants, found)
    await _drained(connection, found)
    return found


async def _usage(connection: Any, tally: Tally, merchants: list[Merchant], found: Findings) -> None:
    for merchant in merchants:
        rows = await connection.fetch(
            "SELECT transaction_id FROM usage_transactions WHERE merchant_id = $1::uuid",
            merchant.id,
        )
        stored = {row["transaction_id"] for row in rows}
        acknowledged = tally.acknowledged.get(merchant.id, set())
        sent = tally.sent.get(merchant.id, set())
        lost = sorted(acknowledged - stored)
        if lost:
            found.add(f"{merchant.prefix}: acknowledged but not counted", lost, count=len(lost))
        phantom = sorted(stored - sent)
        if phantom:
            found.add(f"{merchant.prefix}: counted but never sent", phantom, count=len(phantom))
        raw = await connection.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT transaction_id) AS ids,"
            " coalesce(sum(quantity), 0) AS quantity, coalesce(sum(gmv_minor), 0) AS gmv"
            " FROM usage_events WHERE merchant_id = $1::uuid",
            merchant.id,
        )
        totals = await connection.fetchrow(
            "SELECT coalesce(sum(event_count), 0) AS events,"
            " coalesce(sum(quantity), 0) AS quantity, coalesce(sum(gmv_minor), 0) AS gmv"
            " FROM usage_aggregates WHERE merchant_id = $1::uuid",
            merchant.id,
        )
        if raw["events"] != raw["ids"]:
            found.add(f"{merchant.prefix}: an event stored twice", count=raw["events"] - raw["ids"])
        if raw["events"] != len(stored):
            found.add(
                f"{merchant.prefix}: {raw['events']} raw events but {len(stored)} ledger rows"
            )
        if (raw["events"], raw["quantity"], raw["gmv"]) != (
            totals["events"],
            totals["quantity"],
            totals["gmv"],
        ):
            found.add(
                f"{merchant.prefix}: per-period totals (events, quantity, GMV)"
                f" {tuple(totals.values())} differ from the events {tuple(raw.values())[::2]}"
            )
    found.figures["events_counted"] = await connection.fetchval(
        "SELECT count(*) FROM usage_transactions"
    )


async def _invoices(connection: Any, grace: timedelta, found: Findings) -> None:
    periods = await connection.fetch(
        """
        SELECT sp.merchant_id, sp.period_start,
               (SELECT count(*) FROM invoices i
                WHERE i.merchant_id = sp.merchant_id AND i.subscription_id = sp.subscription_id
                  AND i.period_start = sp.period_start AND i.kind = 'period') AS invoices
        FROM subscription_periods sp
        JOIN merchants m ON m.id = sp.merchant_id
        JOIN test_clocks tc ON tc.id = m.test_clock_id
        WHERE sp.status = 'ended' AND sp.period_end + $1::interval <= tc.frozen_time
        """,
        grace,
    )
    wrong = [
        f"{row['merchant_id']} {row['period_start']:%Y-%m-%d}: {row['invoices']}"
        for row in periods
        if row["invoices"] != 1
    ]
    if wrong:
        found.add("ended periods without exactly one invoice", wrong, count=len(wrong))
    found.figures["periods_ended"] = len(periods)
    invoices = await connection.fetch("SELECT merchant_id, status, number FROM invoices")
    found.figures["invoices"] = len(invoices)
    drafts = [str(row["merchant_id"]) for row in invoices if row["status"] == "draft"]
    if drafts:
        found.add("invoices left as drafts", drafts, count=len(drafts))
    numbers: dict[tuple[Any, str], list[int]] = defaultdict(list)
    for row in invoices:
        if row["number"]:
            prefix, _, serial = row["number"].rpartition("-")
            numbers[(row["merchant_id"], prefix)].append(int(serial))
    for (merchant_id, prefix), serials in numbers.items():
        if sorted(serials) != list(range(1, len(serials) + 1)):
            found.add(f"{merchant_id}: invoice numbers {prefix}-… not gapless", sorted(serials))


async def _stripe(
    connection: Any, standin: Any, merchants: list[Merchant], found: Findings
) -> None:
    ours = {
        str(row["id"]): row
        for row in await connection.fetch(
            "SELECT id, merchant_id, status, total_minor, amount_paid_minor,"
            " stripe_invoice_id FROM invoices"
        )
    }
    pushed = {
        row["invoice_id"]
        for row in await connection.fetch(
            "SELECT payload ->> 'invoice_id' AS invoice_id FROM stripe_outbox"
            " WHERE command = 'invoice.push'"
        )
    }
    in_stripe: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for invoice in standin.objects("invoice"):
        in_stripe[(invoice.get("metadata") or {}).get("kefu_invoice_id", "?")].append(invoice)
    doubled = sorted(invoice_id for invoice_id, made in in_stripe.items() if len(made) > 1)
    if doubled:
        found.add("invoices pushed to Stripe more than once", doubled, count=len(doubled))
    strangers = sorted(invoice_id for invoice_id in in_stripe if invoice_id not in ours)
    if strangers:
        found.add("Stripe invoices that are none of ours", strangers)
    missing = sorted(invoice_id for invoice_id in pushed if invoice_id not in in_stripe)
    if missing:
        found.add("invoices to push that Stripe does not have", missing, count=len(missing))
    found.figures["stripe_invoices"] = sum(len(made) for made in in_stripe.values())
    payments = Counter(
        str(row["invoice_id"]) for row in await connection.fetch("SELECT invoice_id FROM payments")
    )
    for invoice_id, made in in_stripe.items():
        row = ours.get(invoice_id)
        if row is None:
            continue
        stripe_invoice = made[0]
        if row["stripe_invoice_id"] != stripe_invoice["id"]:
            found.add(f"invoice {invoice_id}: our Stripe id {row['stripe_invoice_id']}"
                      f" is not Stripe's {stripe_invoice['id']}")  # fmt: skip
        if stripe_invoice["total"] != row["total_minor"]:
            found.add(
                f"invoice {invoice_id}: Stripe's total is {stripe_invoice['total']},"
                f" ours {row['total_minor']}"
            )
        if stripe_invoice["status"] == "paid":
            if row["status"] != "paid" or payments[invoice_id] != 1:
                found.add(
                    f"invoice {invoice_id}: paid in Stripe, here {row['status']} with"
                    f" {payments[invoice_id]} payment(s)"
                )
            elif row["amount_paid_minor"] != stripe_invoice["amount_paid"]:
                found.add(
                    f"invoice {invoice_id}: Stripe was paid {stripe_invoice['amount_paid']},"
                    f" we recorded {row['amount_paid_minor']}"
                )
    found.figures["stripe_paid"] = sum(
        1 for made in in_stripe.values() if made[0]["status"] == "paid"
    )
    # At the end every merchant has paid: by the card it saved (charged by the worker) or on
    # the hosted page of what it was sent (the gauntlet pays those before the audit).
    still_open = sorted(
        invoice_id for invoice_id, made in in_stripe.items() if made[0]["status"] == "open"
    )
    if still_open:
        found.add(
            "invoices still open in Stripe (a saved card never charged, a sent one never paid)",
            still_open,
            count=len(still_open),
        )
    doubled_payments = [invoice_id for invoice_id, count in payments.items() if count > 1]
    if doubled_payments:
        found.add("invoices with more than one payment", doubled_payments)
    customers = Counter(
        (customer.get("metadata") or {}).get("kefu_merchant_id")
        for customer in standin.objects("customer")
    )
    for merchant in merchants:
        if customers[merchant.id] != 1:
            found.add(f"{merchant.prefix}: {customers[merchant.id]} Stripe customers, not 1")
    events = {event["id"] for event in standin.events()}
    inbox = {
        row["event_id"]: row["status"]
        for row in await connection.fetch("SELECT event_id, status FROM stripe_inbox")
    }
    never = sorted(event_id for event_id in events if event_id not in inbox)
    if never:
        found.add("Stripe events that never reached the inbox", never, count=len(never))
    found.figures["stripe_events"] = len(events)
    found.figures["stripe_objects"] = standin.counts()


async def _drained(connection: Any, found: Findings) -> None:
    waiting = await connection.fetch(
        "SELECT id, command, status, attempts, last_error FROM stripe_outbox"
        " WHERE status NOT IN ('sent', 'skipped', 'resolved') ORDER BY id"
    )
    if waiting:
        found.add(
            "outbox rows not sent",
            [f"{r['id']} {r['command']} {r['status']} ({r['last_error']})" for r in waiting],
            count=len(waiting),
        )
    unprocessed = await connection.fetch(
        "SELECT event_id, event_type, status, last_error FROM stripe_inbox"
        " WHERE status <> 'processed' ORDER BY id"
    )
    if unprocessed:
        found.add(
            "inbox events not processed",
            [
                f"{r['event_id']} {r['event_type']} {r['status']} ({r['last_error']})"
                for r in unprocessed
            ],
            count=len(unprocessed),
        )
    found.figures["outbox"] = {
        r["status"]: r["count"]
        for r in await connection.fetch(
            "SELECT status, count(*) FROM stripe_outbox GROUP BY status ORDER BY status"
        )
    }
    found.figures["inbox"] = await connection.fetchval("SELECT count(*) FROM stripe_inbox")
