"""``billing demo`` with Stripe: always the local stand-in, never a real account (the demo's
customers and products would stay there). The API is served for real on loopback (the stand-in
posts signed webhooks to it), the worker's Stripe pass runs after each step of the story and
pushes customers, products, prices and invoices. One merchant saves a card through its payment
link (Checkout in setup mode) and is charged; one pays its sent invoices on their hosted pages;
the custom contract pays by bank transfer. ``invoice.paid`` comes back; an SLA credit note on a
charged invoice is refunded through Stripe and ``charge.refunded`` comes back; then our ledger
and Stripe's are compared side by side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from plans.money import format_minor
from plans.periods import zone
from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database
from service.db.tables import CreditNote, Invoice, Payment, Refund
from service.invoicing import credit_notes
from service.settings import PaymentSettings, Settings, StripeSettings
from service.subscriptions import clocks
from webhooks.gateway import Gateway
from webhooks.standin import StandIn
from webhooks.sync import StripeSync

DemoRun = Callable[[Settings, Any, Console, Any], Awaitable[list[dict[str, Any]]]]


async def run(
    settings: Settings,
    console: Console,
    run_demo: DemoRun,
    create_app: Callable[..., Any],
    show_invoices: Callable[[Console, list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    """The demo, with the local Stripe stand-in. Prints the invoices, then the
    reconciliation of the simulated months against Stripe. The demo never uses a real Stripe
    account (``settings.stripe`` is ignored): it would leave the demo's customers and products
    there."""
    import uvicorn

    port = _free_port()
    standin = StandIn.start(port=0, webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe")
    stripe_settings = StripeSettings(
        api_key="sk_test_standin", webhook_secret=standin.webhook_secret, api_base=standin.base_url
    )
    settings = dataclasses.replace(
        settings,
        stripe=stripe_settings,
        payments=PaymentSettings(public_url=f"http://127.0.0.1:{port}"),
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.02)
    console.print(
        f"[bold]Stripe:[/bold] the local stand-in at {standin.base_url}; "
        f"webhooks to the API served on 127.0.0.1:{port}"
    )
    sync = StripeSync(stripe_settings, gateway=Gateway.from_settings(stripe_settings))
    try:
        story = StandInPayments(sync, standin, console)
        invoices = await run_demo(settings, app, console, story)
        merchant_ids = sorted({uuid.UUID(str(invoice["merchant_id"])) for invoice in invoices})
        await _settle(sync, standin, merchant_ids)
        paid = await Invoice.objects().where(
            Invoice.merchant_id.is_in(merchant_ids)
            & (Invoice.status == "paid")
            & (Invoice.amount_paid_minor > 0)
        )
        console.print(
            f"pushed to Stripe: {standin.count('customer')} customers, "
            f"{standin.count('product')} products, {standin.count('price')} prices, "
            f"{standin.count('invoice')} invoices; paid by webhook: {len(paid)}"
        )
        charged = await _charged_invoice(merchant_ids)
        if charged is not None:
            await _sla_credit_note(charged, console)
            await _settle(sync, standin, merchant_ids)
        _print_agreement(console, standin, await _ledger(merchant_ids))
        statuses = {row.id: row.status for row in await _ledger_invoices(merchant_ids)}
        invoices = [
            {**invoice, "status": statuses.get(uuid.UUID(str(invoice["id"])), invoice["status"])}
            for invoice in invoices
        ]
        show_invoices(console, invoices)
        await _reconcile(sync, merchant_ids, console)
        return invoices
    finally:
        server.should_exit = True
        await serving
        standin.stop()


async def _reconcile(sync: StripeSync, merchant_ids: list[uuid.UUID], console: Console) -> None:
    """Finance's check of the simulated months: this ledger against what Stripe holds. The
    stand-in stamps its objects with today's date, so the window runs from the first simulated
    day to today."""
    from service.finance import reconcile
    from service.finance.printing import print_reconciliation
    from webhooks.reconcile_source import StripeLedgerSource

    now = SYSTEM_CLOCK.now()
    result = await reconcile.run(
        StripeLedgerSource(sync.gateway),
        first_day=date(2026, 9, 1),
        last_day=now.astimezone(zone("Asia/Shanghai")).date(),
        timezone="Asia/Shanghai",
        merchant_ids=merchant_ids,
    )
    print_reconciliation(console, await reconcile.store(result, now=now))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _settle(sync: StripeSync, standin: StandIn, merchant_ids: list[uuid.UUID]) -> None:
    """Worker passes until the outbox is sent and every webhook is processed. Each pass reads
    the time afresh (plus a minute a round, so backoffs pass): a webhook stored during a pass is
    due at its storing time, which an earlier reading would not reach."""
    for round_no in range(40):
        summary = await sync.run_pass(
            now=datetime.now(UTC) + timedelta(minutes=round_no),
            merchant_ids=merchant_ids,
            include_catalog=True,
        )
        await asyncio.to_thread(standin.webhooks.wait_idle, 10)
        await asyncio.sleep(0.05)
        if summary.is_idle:
            again = await sync.run_pass(
                now=datetime.now(UTC) + timedelta(minutes=round_no), merchant_ids=merchant_ids
            )
            if again.is_idle:
                return


class StandInPayments:
    """``service.demo.DemoPayments`` on the stand-in: the worker's Stripe pass runs after each
    step, and the merchants do at Stripe what the story says. The basic merchant opens its
    payment link and saves a card on the Checkout page (its invoices are charged to it); the
    advanced one saves none (its invoices are sent; it pays each on its hosted page, by WeChat
    Pay); the custom contract pays by bank transfer (its sent invoices are marked paid in the
    dashboard)."""

    def __init__(self, sync: StripeSync, standin: StandIn, console: Console) -> None:
        self.sync = sync
        self.standin = standin
        self.console = console

    @staticmethod
    def _ids(merchants: dict[str, dict[str, Any]]) -> list[uuid.UUID]:
        return sorted(uuid.UUID(m["merchant_id"]) for m in merchants.values())

    async def after_signup(self, merchants: dict[str, dict[str, Any]]) -> None:
        await _settle(self.sync, self.standin, self._ids(merchants))  # the Stripe customers
        basic = merchants["basic"]
        async with httpx.AsyncClient(timeout=30) as http:
            opened = await http.get(basic["payment_setup_url"])
        if opened.status_code != 303:
            raise RuntimeError(f"the payment link answered {opened.status_code}: {opened.text}")
        session_id = opened.headers["location"].rsplit("/", 1)[-1]
        self.standin.hosted.complete_checkout(session_id)
        await _settle(self.sync, self.standin, self._ids(merchants))
        self.console.print(
            f"{escape(basic['name'])} opens its payment link and saves a card on Stripe's"
            " Checkout page: its invoices are charged to it. "
            f"{escape(merchants['advanced']['name'])} saves none: its invoices are sent, each"
            f" with a payment link. {escape(merchants['custom']['name'])}'s contract pays by bank"
            " transfer, 30 days",
            highlight=False,
        )

    async def after_close(self, merchants: dict[str, dict[str, Any]]) -> None:
        ids = self._ids(merchants)
        await _settle(self.sync, self.standin, ids)  # charged, or sent
        paid = []
        for tier, pay in (("advanced", self._pay_on_hosted_page), ("custom", self._transfer)):
            merchant_id = uuid.UUID(merchants[tier]["merchant_id"])
            for invoice in await Invoice.objects().where(
                (Invoice.merchant_id == merchant_id)
                & (Invoice.status == "open")
                & Invoice.stripe_invoice_id.is_not_null()
            ):
                pay(str(invoice.stripe_invoice_id))
                paid.append(f"{invoice.number} ({tier})")
        await _settle(self.sync, self.standin, ids)
        if paid:
            self.console.print(
                "sent invoices paid: " + ", ".join(paid) + " — advanced on the hosted invoice"
                " page (WeChat Pay), custom by bank transfer",
                highlight=False,
            )

    def _pay_on_hosted_page(self, stripe_invoice_id: str) -> None:
        self.standin.hosted.pay_invoice(stripe_invoice_id, method="wechat_pay")

    def _transfer(self, stripe_invoice_id: str) -> None:
        self.standin.dashboard.mark_invoice_paid(stripe_invoice_id)


async def _charged_invoice(merchant_ids: list[uuid.UUID]) -> Invoice | None:
    """The first invoice Stripe collected by a charge (so a credit note on it is refunded)."""
    payment = (
        await Payment.objects()
        .where(Payment.merchant_id.is_in(merchant_ids) & Payment.stripe_charge_id.is_not_null())
        .order_by(Payment.paid_at)
        .first()
    )
    if payment is None:
        return None
    return (
        await Invoice.objects()
        .where((Invoice.merchant_id == payment.merchant_id) & (Invoice.id == payment.invoice_id))
        .first()
    )


async def _sla_credit_note(invoice: Invoice, console: Console) -> None:
    """An SLA credit on a paid invoice: 10% back, which Stripe refunds."""
    async with current_database().engine.transaction():
        now = (await clocks.clock_for_merchant(invoice.merchant_id)).now()
        note, _ = await credit_notes.issue(
            invoice.merchant_id,
            invoice.id,
            amount_minor=max(invoice.total_minor // 10, 1),
            reason=credit_notes.Reason.SLA_CREDIT,
            memo="CSAT below 90%: 10% of the period's fees back",
            now=now,
        )
    console.print(
        f"SLA credit note {note.number}: {format_minor(note.amount_minor, note.currency)} "
        f"back on paid invoice {invoice.number} → a refund through Stripe"
    )


async def _ledger_invoices(merchant_ids: list[uuid.UUID]) -> list[Invoice]:
    return await Invoice.objects().where(Invoice.merchant_id.is_in(merchant_ids))


async def _ledger(merchant_ids: list[uuid.UUID]) -> dict[str, Any]:
    invoices = await Invoice.objects().where(Invoice.merchant_id.is_in(merchant_ids))
    notes = await CreditNote.objects().where(CreditNote.merchant_id.is_in(merchant_ids))
    refunds = await Refund.objects().where(Refund.merchant_id.is_in(merchant_ids))
    return {"invoices": invoices, "credit_notes": notes, "refunds": refunds}


def _print_agreement(console: Console, standin: StandIn, ledger: dict[str, Any]) -> None:
    stripe_invoices = {obj["id"]: obj for obj in standin.objects("invoice")}
    stripe_refunds = {obj["id"]: obj for obj in standin.objects("refund")}
    table = RichTable(title="Our ledger and Stripe's, side by side", title_justify="left")
    for column in ("ours", "status / amount", "Stripe", "status / amount", "agree"):
        table.add_column(column)
    disagreements = 0
    for invoice in sorted(ledger["invoices"], key=lambda i: i.number or ""):
        theirs = stripe_invoices.get(invoice.stripe_invoice_id or "")
        ours_text = f"{invoice.status} {format_minor(invoice.amount_paid_minor, invoice.currency)}"
        if theirs is None:
            agree = invoice.total_minor == 0
            theirs_text = "(nothing due: not pushed)"
        else:
            agree = (theirs["status"], theirs["amount_paid"], theirs["total"]) == (
                invoice.status,
                invoice.amount_paid_minor,
                invoice.total_minor,
            )
            theirs_text = (
                f"{theirs['status']} {format_minor(theirs['amount_paid'], invoice.currency)}"
            )
        disagreements += not agree
        table.add_row(
            f"invoice {invoice.number}",
            ours_text,
            theirs["number"] if theirs else "",
            theirs_text,
            "yes" if agree else "[red]NO[/red]",
        )
    for refund in ledger["refunds"]:
        theirs = stripe_refunds.get(refund.stripe_refund_id)
        agree = theirs is not None and (theirs["amount"], theirs["status"]) == (
            refund.amount_minor,
            refund.status,
        )
        disagreements += not agree
        table.add_row(
            f"refund ({refund.origin})",
            f"{refund.status} {format_minor(refund.amount_minor, refund.currency)}",
            refund.stripe_refund_id,
            f"{theirs['status']} {format_minor(theirs['amount'], refund.currency)}"
            if theirs
            else "missing",
            "yes" if agree else "[red]NO[/red]",
        )
    for note in ledger["credit_notes"]:
        table.add_row(
            f"credit note {note.number}",
            f"{note.reason} {format_minor(note.amount_minor, note.currency)}",
            note.stripe_credit_note_id or "",
            f"refund {note.refund_status}",
            "yes" if note.refund_status in ("refunded", "none") else "[red]NO[/red]",
        )
    console.print(table)
    verdict = "everything agrees" if disagreements == 0 else f"{disagreements} disagreement(s)"
    console.print(f"[bold]Stripe sync:[/bold] {verdict}")
