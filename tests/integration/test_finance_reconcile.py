# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Reconciliation through the Stripe stand-in: a clean month has no differences; each planted
difference is found and described with both sides."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import os
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from plans.money import round_half_up
from service.app import create_app
from service.db.engine import current
from service.db.tables import Invoice, Merchant
from service.finance import reconcile
from service.settings import Settings, StripeSettings
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import close_pass, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_objects,
    stripe_settings,
    sync,
)
from webhooks.reconcile_source import StripeLedgerSource

START = "2026-03-10T00:00:00+08:00"


async def _invoiced(client: httpx.AsyncClient, operator: Tenant, sync: Sync, plan: str) -> Tenant:
    clock = await new_clock(client, operator, START)
    tenant, _ = await signup_tenant(client, operator, plan=plan, test_clock_id=clock)
    await add_card(sync, tenant.merchant_id)  # so that Stripe charges its invoices
    await close_pass(tenant.merchant_id)
    return tenant


async def _charge_of(sync: Sync, tenant: Tenant) -> dict[str, Any]:
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    [charge] = [
        ch for ch in sync.standin.objects("charge")
        if ch["customer"] == merchant.stripe_customer_id and ch["status"] == "succeeded"
    ]  # fmt: skip
    return charge


async def _run(sync: Sync) -> reconcile.Reconciliation:
    # Our invoices are dated by their test clocks (March), Stripe's objects by the wall clock:
    # a range covering both.
    return await reconcile.run(
        StripeLedgerSource(sync.stripe_sync.gateway),  # type: ignore[arg-type]
        first_day=date(2026, 3, 1), last_day=date(2027, 12, 31), timezone="Asia/Shanghai",
        merchant_ids=sync.merchant_ids,
    )  # fmt: skip


async def test_a_clean_month_reports_no_differences(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    await _invoiced(stripe_client, operator, sync, "basic")
    await _invoiced(stripe_client, operator, sync, "advanced")
    await sync.settle()
    result = await _run(sync)
    assert result.mismatches == []
    assert result.matched == 4  # two invoices, two payments
    (cny,) = result.summaries.values()
    # Basic ¥99 and advanced ¥300 for March 10–31 (22 of 31 days), paid in full.
    assert cny.billed_minor == cny.collected_minor == cny.stripe_charged_minor > 0
    assert cny.difference_minor == 0
    # The stand-in's fee: 2.9 % + 30 per charge.
    charges = [c for c in sync.standin.objects("charge") if c["status"] == "succeeded"]
    assert cny.stripe_fees_minor == sum(
        round_half_up(Decimal(c["amount"]) * Decimal("0.029")) + 30 for c in charges
    )
    assert cny.stripe_net_minor == cny.stripe_charged_minor - cny.stripe_fees_minor


async def test_planted_differences_are_found_and_described(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    a = await _invoiced(stripe_client, operator, sync, "basic")
    b = await _invoiced(stripe_client, operator, sync, "advanced")
    await sync.settle()
    c = await _invoiced(stripe_client, operator, sync, "basic")
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()

    # A: the payment was never recorded here.
    await current().pool.execute("DELETE FROM payments WHERE merchant_id = $1", a.merchant_id)
    # B: its amount changed on the Stripe side, and a refund made only in Stripe.
    [b_invoice] = stripe_objects(sync.standin, "invoice", b.merchant_id)
    with sync.standin.store.lock:
        sync.standin.store.table("invoice")[b_invoice["id"]]["total"] += 100
    b_charge = await _charge_of(sync, b)
    sync.standin.dashboard.refund_charge(b_charge["id"], amount=500)
    sync.standin.webhooks.wait_idle(timeout=5)
    sync.relay.take()  # its webhooks never arrive
    # C: declined in Stripe (still open there), voided here; the void not yet pushed.
    c_invoice = await Invoice.objects().where(Invoice.merchant_id == c.merchant_id).first()
    assert c_invoice is not None
    voided = await stripe_client.post(f"/v1/invoices/{c_invoice.id}/void", headers=operator.headers)
    assert voided.status_code == 200, voided.text

    result = await _run(sync)
    found = sorted((m.object, m.kind) for m in result.mismatches)
    assert found == [
        ("invoice", "amount"), ("invoice", "voided_here_only"), ("payment", "missing_here"),
        ("refund", "missing_here"),
    ]  # fmt: skip
    by_kind = {(m.object, m.kind): m for m in result.mismatches}
    # Each names its merchant (invoice numbers are only unique with it), from our row or
    # from the Stripe customer of a Stripe-only object.
    assert {key: m.merchant_id for key, m in by_kind.items()} == {
        ("invoice", "amount"): str(b.merchant_id),
        ("invoice", "voided_here_only"): str(c.merchant_id),
        ("payment", "missing_here"): str(a.merchant_id),
        ("refund", "missing_here"): str(b.merchant_id),
    }
    assert {m.merchant_name for m in result.mismatches} == {"Signed-up shop"}
    amount = by_kind[("invoice", "amount")]
    assert amount.theirs is not None
    assert amount.ours is not None
    assert amount.theirs["total_minor"] == amount.ours["total_minor"] + 100
    assert "in Stripe" in amount.detail
    assert by_kind[("refund", "missing_here")].theirs["amount_minor"] == 500  # type: ignore[index]
    assert by_kind[("payment", "missing_here")].ours is None
    void = by_kind[("invoice", "voided_here_only")]
    assert (void.ours["status"], void.theirs["status"]) == ("void", "open")  # type: ignore[index]
    (cny,) = result.summaries.values()
    a_charge = await _charge_of(sync, a)
    # Here: B's payment only. Stripe: A's and B's charges, less the ¥5 refund.
    assert cny.difference_minor == b_charge["amount"] - (
        a_charge["amount"] + b_charge["amount"] - 500
    )

    stored = await reconcile.store(result, now=datetime.now(UTC))
    again = await reconcile.stored(UUID(stored["id"]))
    assert again is not None
    assert again["mismatch_count"] == 4
    assert {(m["object"], m["kind"]) for m in again["mismatches"]} == set(found)


async def test_reconciliations_through_the_api_are_stored_and_exportable(
    stripe_client: httpx.AsyncClient,
    operator: Tenant,
    sync: Sync,
    stripe_settings: Settings,
    database_dsn: str,
) -> None:
    tenant = await _invoiced(stripe_client, operator, sync, "basic")
    sync.standin.dashboard.decline_next_payments(1)
    await sync.settle()
    invoice = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id).first()
    assert invoice is not None
    voided = await stripe_client.post(f"/v1/invoices/{invoice.id}/void", headers=operator.headers)
    assert voided.status_code == 200
    body = {"from": "2026-03-01", "to": "2027-12-31", "merchant_id": str(tenant.merchant_id)}

    # Without a Stripe key there is nothing to compare with.
    unconfigured = await stripe_client.post(
        "/v1/finance/reconciliations", json=body, headers=operator.headers
    )
    assert unconfigured.status_code == 409

    configured = dataclasses.replace(
        stripe_settings,
        stripe=StripeSettings(api_key="sk_test_standin", api_base=sync.standin.base_url),
    )
    transport = httpx.ASGITransport(app=create_app(configured))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        refused = await client.post("/v1/finance/reconciliations", json=body,
                                    headers=tenant.headers)  # fmt: skip
        assert refused.status_code == 403
        made = await client.post("/v1/finance/reconciliations", json=body,
                                 headers=operator.headers)  # fmt: skip
        assert made.status_code == 201, made.text
        run = made.json()
        assert run["mismatch_count"] == 1
        (mismatch,) = run["mismatches"]
        assert (mismatch["object"], mismatch["kind"]) == ("invoice", "voided_here_only")
        assert mismatch["ours"]["number"] == invoice.number
        assert mismatch["theirs"]["id"] == mismatch["ours"]["stripe_invoice_id"]
        assert mismatch["theirs"]["status"] == "open"
        assert run["summaries"][0]["billed_minor"] == 0  # void: nothing billed here

        read = await client.get(f"/v1/finance/reconciliations/{run['id']}",
                                headers=operator.headers)  # fmt: skip
        assert read.json() == run
        latest = await client.get("/v1/finance/reconciliations/latest", headers=operator.headers)
        assert latest.json()["id"] == run["id"]
        exported = await client.get(
            "/v1/finance/exports/reconciliation",
            params={"from": "2026-03-01", "to": "2026-03-01",
                    "merchant_id": str(tenant.merchant_id), "include_test": "true"},
            headers=operator.headers,
        )  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["run_id"], r["object"], r["kind"]) for r in rows] == [
            (run["id"], "invoice", "voided_here_only")
        ]

    # The same from the command line, against the same stand-in.
    env = {**os.environ, "DATABASE_URL": database_dsn, "BILLING_LOG_LEVEL": "WARNING",
           "STRIPE_API_KEY": "sk_test_standin", "STRIPE_API_BASE": sync.standin.base_url,
           "COLUMNS": "200"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "billing"), "reconcile", "--from", "2026-03-01",
        "--to", "2027-12-31", "--merchant", str(tenant.merchant_id),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "0 matched, 1 mismatch(es)" in output
    assert "voided_here_only" in output
