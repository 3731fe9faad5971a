# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""The contract of every Stripe call the code makes.

1. Every call site in ``webhooks/`` (outside the stand-in) is found by reading the code: each
   ``v1.<service>.<method>`` it names is an SDK operation, so its route, parameter type and
   answer type are known.
2. One tour drives every push, look-up and read the code has through the Stripe stand-in, which
   checks each request against the SDK's parameter type (and ``expand[]`` against the answer's
   type) and records it. Every call site must be exercised by the tour — a new call cannot skip
   the check — and no request may have been refused.
3. What was sent (route, SDK method, parameters, expansions) is the table in the README's Stripe
   section, word for word: the list stays true.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import stripe
from stripe._stripe_service import StripeService

from service.db.engine import current as current_database
from service.db.tables import Invoice, StripeCatalogMap
from service.stripe_outbox import Command, enqueue
from tests.integration.conftest import Tenant, signup_answer
from tests.integration.invoicing_helpers import close_pass, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_settings,
    sync,
)
from tests.integration.test_stripe_sync import invoiced_merchant
from webhooks.reconcile_source import StripeLedgerSource
from webhooks.standin import schema

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TABLE_START = "<!-- stripe-calls: made by tests/integration/test_stripe_contract.py -->"
TABLE_END = "<!-- /stripe-calls -->"


def call_sites() -> dict[tuple[str, str], list[str]]:
    """``(service, method) -> ["webhooks/outbox.py:512", ...]`` for every ``v1.x.y`` (or
    ``v1.checkout.sessions.create``: a service of a namespace) in the code that talks to
    Stripe. A service named without its method is refused: pass the method."""
    client = stripe.StripeClient("sk_test_contract")
    sites: dict[tuple[str, str], list[str]] = {}
    for path in sorted((ROOT / "webhooks").rglob("*.py")):
        if "standin" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        inner = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = _after_v1(node)
            if not chain:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            target: object = client.v1
            for name in chain:
                target = getattr(target, name)
            assert not isinstance(target, StripeService), (
                f"{where}: name the SDK method, not only v1.{'.'.join(chain)}"
            )
            sites.setdefault((".".join(chain[:-1]), chain[-1]), []).append(where)
    return sites


def _after_v1(node: ast.Attribute) -> list[str] | None:
    """The names after ``v1`` in ``<...>.v1.a.b.c`` (None when the chain has no ``v1``)."""
    names: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        if _is_v1(current):
            return names[::-1]
        names.append(current.attr)
        current = current.value
    return names[::-1] if _is_v1(current) else None


def _is_v1(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "v1") or (
        isinstance(node, ast.Attribute) and node.attr == "v1"
    )


def operation_of(service: str, method: str) -> schema.Operation:
    client = stripe.StripeClient("sk_test_contract")
    target: object = client.v1
    for name in service.split("."):
        target = getattr(target, name)
    return schema.operation_of(getattr(target, method))


def test_the_code_names_its_stripe_calls_as_sdk_operations() -> None:
    sites = call_sites()
    assert ("credit_notes", "create") in sites  # the scan sees the code
    for (service, method), where in sites.items():
        operation = operation_of(service, method)  # raises for a call the stand-in lacks
        assert operation.path.startswith("/v1/"), where


async def _tour(stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync) -> None:
    """Every kind of push, look-up and read the code makes."""
    # The catalog's products and prices: the basic plan pushed as to a fresh Stripe account
    # (earlier tests of the run may have mapped it already).
    await StripeCatalogMap.delete().where(
        (StripeCatalogMap.item_kind == "plan") & (StripeCatalogMap.code == "basic")
    )
    async with current_database().engine.transaction():
        await enqueue(None, Command.CATALOG_PLAN, {"code": "basic", "version": 1})
    sync.include_catalog = True

    # A credit note before the invoice's push, the push (customer, invoice, items, finalize,
    # credit note, pay), the look-up of the charge, a customer edit, then a credit note after
    # payment whose first attempt fails (the retry looks for what it made).
    tenant, invoice = await invoiced_merchant(stripe_client, operator, sync)
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 500, "reason": "goodwill", "memo": "before the push"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    await sync.settle()
    renamed = await stripe_client.patch(
        "/v1/merchants/me", json={"name": "Renamed shop"}, headers=tenant.headers
    )
    assert renamed.status_code == 200, renamed.text
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 500, "reason": "sla_credit", "memo": "after payment"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    sync.standin.fail_next(1, status=500, method="POST", path_prefix="/v1/credit_notes")
    await sync.settle()
    # A refund an earlier attempt left (tagged with the credit note, as the two-step push did)
    # is linked with refunds[] (a "duplicate" credit note: Stripe's own reason goes along).
    response = await stripe_client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 300, "reason": "duplicate", "memo": "charged twice"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    note_id = response.json()["id"]
    sync.standin.fail_next(1, status=500, method="POST", path_prefix="/v1/credit_notes")
    sync.hold_webhooks = True  # its events come after the push has recorded it
    await sync.stripe_sync.run_pass(now=datetime.now(UTC), merchant_ids=[tenant.merchant_id])
    [charge] = [c for c in sync.standin.objects("charge") if c["amount_refunded"]]
    left = sync.standin.dashboard.refund_charge(charge["id"], amount=300)
    sync.standin.dashboard.update_refund(
        left["id"],
        {
            "kefu_credit_note_id": note_id,
            "kefu_invoice_id": str(invoice.id),
            "kefu_merchant_id": str(tenant.merchant_id),
        },
    )
    await sync.settle()
    sync.hold_webhooks = False
    await sync.settle()

    # Pushes retried after Stripe forgot their keys look up what earlier attempts made: the
    # customer (whose answer was lost), then the invoice left a draft, and its items.
    late, _ = await invoiced_merchant(stripe_client, operator, sync, with_card=False)
    sync.standin.fail_next(1, status="lost", method="POST", path_prefix="/v1/customers")
    await sync.stripe_sync.run_pass(now=datetime.now(UTC), merchant_ids=[late.merchant_id])
    sync.standin.forget_idempotency_keys()
    sync.standin.fail_next(1, status=500, method="POST", path_prefix="/v1/invoices/")
    a_day_later = datetime.now(UTC) + timedelta(hours=25)
    await sync.stripe_sync.run_pass(now=a_day_later, merchant_ids=[late.merchant_id])
    sync.standin.forget_idempotency_keys()
    await sync.settle(now=a_day_later + timedelta(hours=1))

    # A declined payment, retried by dunning after Stripe closed the invoice another way: the
    # refused payment is followed by a read of the invoice.
    _, declined = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()
    declined_row = await Invoice.objects().where(Invoice.id == declined.id).first()
    assert declined_row is not None
    assert declined_row.next_payment_retry_at is not None, (
        declined_row.status,
        declined_row.payment_attempts,
    )
    assert declined_row.stripe_invoice_id is not None
    sync.hold_webhooks = True
    sync.standin.dashboard.mark_invoice_paid(declined_row.stripe_invoice_id)
    await sync.settle(now=declined_row.next_payment_retry_at + timedelta(minutes=1))
    sync.hold_webhooks = False
    await sync.settle(now=declined_row.next_payment_retry_at + timedelta(minutes=2))

    # Our void of an invoice Stripe could not collect.
    _, voided = await invoiced_merchant(stripe_client, operator, sync)
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()
    response = await stripe_client.post(f"/v1/invoices/{voided.id}/void", headers=operator.headers)
    assert response.status_code == 200, response.text
    await sync.settle()

    # Ways to pay: a merchant without a card gets its first invoice sent; it opens its
    # payment-setup link (a Checkout Session in setup mode) and saves a card there (the
    # SetupIntent read, the card made the invoice default), which then pays the sent invoice;
    # then it opens the billing portal (its configuration made at first use).
    await _ways_to_pay(stripe_client, operator, sync)

    # The reconciliation's reads.
    gateway = sync.stripe_sync.gateway
    assert gateway is not None
    now = datetime.now(UTC)
    await StripeLedgerSource(gateway).snapshot(now - timedelta(days=1), now + timedelta(days=3))


async def _ways_to_pay(stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync) -> None:
    clock = await new_clock(stripe_client, operator, "2026-03-10T00:00:00+08:00")
    tenant, created = await signup_answer(stripe_client, operator, test_clock_id=clock)
    sync.merchant_ids.append(tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    await sync.settle()
    [invoice] = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id)
    assert (invoice.collection_method, invoice.status) == ("send_invoice", "open")
    opened = await stripe_client.get(urlsplit(created["payment_setup"]["url"]).path)
    assert opened.status_code == 303, opened.text
    sync.standin.hosted.complete_checkout(opened.headers["location"].rsplit("/", 1)[-1])
    await sync.settle()
    paid = await Invoice.objects().where(Invoice.id == invoice.id).first()
    assert paid is not None
    assert paid.status == "paid"
    portal = await stripe_client.post("/v1/merchants/me/billing-portal", headers=tenant.headers)
    assert portal.status_code == 201, portal.text


def _table(sent: dict[str, tuple[str, set[str], set[str]]]) -> list[str]:
    """README rows: one per route, with the SDK method, parameters and expansions sent."""
    rows = []
    for route, (sdk_name, params, expands) in sorted(sent.items()):
        rows.append(
            f"| `{route}` | `{sdk_name}` | {', '.join(sorted(params)) or '—'} |"
            f" {', '.join(f'`{e}`' for e in sorted(expands)) or '—'} |"
        )
    return rows


async def test_every_stripe_call_is_exercised_checked_against_the_sdk_and_documented(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    await _tour(stripe_client, operator, sync)
    received = sync.standin.received()
    refused = [r for r in received if r.refused]
    assert not refused, [(r.method, r.template, r.refused) for r in refused]

    sites = call_sites()
    routes = {}
    for (service, method), where in sites.items():
        operation = operation_of(service, method)
        routes[(operation.http_method, operation.path)] = (f"v1.{service}.{method}", where)
    sent: dict[str, tuple[str, set[str], set[str]]] = {}
    for request in received:
        sdk_name, _ = routes.get((request.method, request.template), ("(not in the code)", []))
        route = f"{request.method} {request.template}"
        _, params, expands = sent.setdefault(route, (sdk_name, set(), set()))
        params.update(key for key in request.params if key != "expand")
        expands.update(request.params.get("expand", []))
    exercised = {tuple(route.split(" ", 1)) for route in sent}
    missing = {
        f"{name} ({', '.join(where)})"
        for route, (name, where) in routes.items()
        if route not in exercised
    }
    assert not missing, f"call sites the tour does not exercise: {sorted(missing)}"
    unknown = sorted(route for route, (name, _, _) in sent.items() if name == "(not in the code)")
    assert not unknown, f"requests no call site of the code makes: {unknown}"

    expected = _table(sent)
    text = README.read_text()
    assert TABLE_START in text, "the README lost its table of Stripe calls"
    assert TABLE_END in text, "the README lost the end of its table of Stripe calls"
    documented = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = [line for line in documented.strip().splitlines() if re.match(r"\| `[A-Z]+ ", line)]
    assert rows == expected, "README's Stripe calls differ; the rows are now:\n" + "\n".join(
        expected
    )
