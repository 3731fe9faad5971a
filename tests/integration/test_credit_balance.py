# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""A credit balance reaches the money owed: open invoices first (oldest first) as credit notes,
then the next invoices, then refunds once nothing more will be invoiced; what nothing can take
stays, visible. Every movement is listed, audited and made once."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from httpx import AsyncClient

from service.db.engine import current as current_database
from service.db.tables import CreditNote, Invoice
from service.invoicing import invoices as invoice_store
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, amounts, close_pass, invoices_of, new_clock
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    add_card,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_objects,
    stripe_refunds,
    stripe_settings,
    sync,
)

JUNE = "2026-06-01T00:00:00+08:00"
MID_JUNE = "2026-06-16T00:00:00+08:00"  # 15 of June's 30 days left: ¥99 × 15/30 = ¥49.50
AFTER_GRACE = "2026-06-19T00:00:00+08:00"  # the last period's 48 h grace window has passed


async def _balance(client: AsyncClient, tenant: Tenant) -> dict[str, Any]:
    response = await client.get("/v1/credit-balance", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _moves(balance: dict[str, Any]) -> list[tuple[str, int, int, str | None]]:
    return [
        (m["kind"], m["amount_minor"], m["balance_after_minor"], m["invoice_number"])
        for m in balance["movements"]
    ]


async def _cancel_now(client: AsyncClient, tenant: Tenant, subscription_id: str) -> None:
    response = await client.post(
        f"/v1/subscriptions/{subscription_id}/cancel",
        json={"at_period_end": False, "reason": "closing shop"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text


async def _invoiced_in_june(
    client: AsyncClient, operator: Tenant, sync: Sync | None = None
) -> tuple[Tenant, dict[str, Any], str, dict[str, Any]]:
    """Basic from June 1 on a test clock; June's ¥99 invoiced at once and left open. With
    ``sync``, a card is saved for the merchant's invoices before (so Stripe charges them)."""
    clock = await new_clock(client, operator, JUNE)
    tenant, sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    if sync is not None:
        await add_card(sync, tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    [first] = await invoices_of(client, tenant)
    assert (first["status"], first["total_minor"]) == ("open", 9900)
    return tenant, sub, clock, first


async def _pay(invoice_id: str, amount_minor: int) -> None:
    """What the ``invoice.paid`` webhook handler records."""
    async with current_database().engine.transaction():
        invoice = await invoice_store.get(None, uuid.UUID(invoice_id), lock=True)
        await invoice_store.record_payment(invoice, amount_minor, at=datetime.now(UTC))


async def _invoice(client: AsyncClient, tenant: Tenant, invoice_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/invoices/{invoice_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_cancel_now_credits_the_open_first_period_invoice(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(client, operator)
    await advance(client, operator, clock, MID_JUNE)
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)

    _, credit = await invoices_of(client, tenant)
    # the unused half of June's fee, credited; the invoice cannot go below zero, so it is
    # carried to the balance ...
    assert amounts(credit) == [
        ("proration", "monthly_fee", -4950),
        ("credit", "credit_balance_carried_forward", 4950),
    ]
    assert (credit["total_minor"], credit["status"]) == (0, "paid")
    # ... and reaches the open invoice that still asks for the whole fee
    first = await _invoice(client, tenant, first["id"])
    assert [(n["amount_minor"], n["reason"], n["kind"]) for n in first["credit_notes"]] == [
        (4950, "credit_balance", "pre_payment")
    ]
    assert (first["status"], first["amount_due_minor"], first["total_minor"]) == (
        "open",
        4950,
        9900,
    )
    balance = await _balance(client, tenant)
    assert balance["balance_minor"] == 0
    assert _moves(balance) == [
        ("carried_forward", 4950, 4950, credit["number"]),
        ("credit_note", -4950, 0, first["number"]),
    ]
    assert balance["movements"][1]["credit_note_number"] == first["credit_notes"][0]["number"]

    # A second pass, then the last period's invoice after the grace window: nothing twice.
    await close_pass(tenant.merchant_id)
    await advance(client, operator, clock, AFTER_GRACE)
    await close_pass(tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    assert len(await invoices_of(client, tenant)) == 3
    assert len((await _invoice(client, tenant, first["id"]))["credit_notes"]) == 1
    assert _moves(await _balance(client, tenant)) == _moves(balance)
    audited = await current_database().pool.fetch(
        "SELECT action, changes FROM audit_log WHERE merchant_id = $1 AND entity = 'credit_balance'"
        " ORDER BY id",
        tenant.merchant_id,
    )
    assert [row["action"] for row in audited] == ["carried_forward", "credit_note"]


async def test_a_balance_with_nowhere_to_go_waits_and_is_refunded_when_nothing_more_is_invoiced(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(client, operator)
    await _pay(first["id"], 9900)
    await advance(client, operator, clock, MID_JUNE)
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)
    # nothing open to take it and the last period is still to be invoiced: it waits, visible
    waiting = await _balance(client, tenant)
    assert (waiting["balance_minor"], waiting["currency"]) == (4950, "CNY")
    assert [m["kind"] for m in waiting["movements"]] == ["carried_forward"]

    await advance(client, operator, clock, AFTER_GRACE)
    await close_pass(tenant.merchant_id)  # the last invoice: now nothing more will be invoiced
    await close_pass(tenant.merchant_id)
    first = await _invoice(client, tenant, first["id"])
    [note] = first["credit_notes"]
    assert (note["amount_minor"], note["reason"], note["kind"], note["refund_status"]) == (
        4950,
        "credit_balance",
        "post_payment",
        "pending",  # the Stripe sync makes the refund
    )
    refunded = await _balance(client, tenant)
    assert refunded["balance_minor"] == 0
    assert [(m["kind"], m["amount_minor"]) for m in refunded["movements"]] == [
        ("carried_forward", 4950),
        ("refund", -4950),
    ]


async def test_what_no_payment_can_take_stays_on_the_balance(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(client, operator)
    voided = await client.post(f"/v1/invoices/{first['id']}/void", headers=operator.headers)
    assert voided.status_code == 200, voided.text
    await advance(client, operator, clock, MID_JUNE)
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)
    await advance(client, operator, clock, AFTER_GRACE)
    await close_pass(tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    kept = await _balance(client, tenant)
    assert kept["balance_minor"] == 4950
    assert [m["kind"] for m in kept["movements"]] == ["carried_forward"]
    operator_view = await client.get(
        "/v1/credit-balance",
        params={"merchant_id": str(tenant.merchant_id)},
        headers=operator.headers,
    )
    assert operator_view.json()["balance_minor"] == 4950
    assert await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id) == []


async def test_the_balance_reaches_open_invoices_oldest_first_before_the_next_invoice(
    client: AsyncClient, operator: Tenant
) -> None:
    # Advanced bills prorations at once: an upgrade and a cancellation each get an invoice.
    clock = await new_clock(client, operator, JUNE)
    tenant, sub = await signup_tenant(client, operator, plan="advanced", test_clock_id=clock)
    await close_pass(tenant.merchant_id)  # KB-1: June's ¥300, open
    await advance(client, operator, clock, "2026-06-11T00:00:00+08:00")
    added = await client.post(
        f"/v1/subscriptions/{sub['id']}/add-ons",
        json={"addons": ["tooling_bundle"]},
        headers=tenant.headers,
    )
    assert added.status_code == 200, added.text
    await close_pass(tenant.merchant_id)  # KB-2: ¥1,000 × 20/30 = ¥666.67, open
    await advance(client, operator, clock, "2026-06-26T00:00:00+08:00")
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)  # KB-3: credit (¥300 + ¥1,000) × 5/30 = ¥216.67
    first, second, credit = await invoices_of(client, tenant)
    assert credit["total_minor"] == 0
    carried = next(
        line["amount_minor"]
        for line in credit["lines"]
        if line["charge_code"] == "credit_balance_carried_forward"
    )
    assert carried == 5000 + 16667
    first = await _invoice(client, tenant, first["id"])
    second = await _invoice(client, tenant, second["id"])
    assert [n["amount_minor"] for n in first["credit_notes"]] == [carried]  # the oldest first
    assert second["credit_notes"] == []


async def test_the_database_refuses_a_movement_made_twice_or_below_zero(
    client: AsyncClient, operator: Tenant
) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(client, operator)
    await advance(client, operator, clock, MID_JUNE)
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)
    pool = current_database().pool
    row = await pool.fetchrow(
        "SELECT * FROM credit_balance_movements WHERE merchant_id = $1 AND kind = 'credit_note'",
        tenant.merchant_id,
    )
    insert = (
        "INSERT INTO credit_balance_movements (merchant_id, seq, kind, amount_minor, currency,"
        " balance_after_minor, invoice_id, credit_note_id, created_at)"
        " VALUES ($1, $2, $3, $4, 'CNY', $5, $6, $7, now())"
    )
    with pytest.raises(asyncpg.UniqueViolationError):  # the same credit note spent twice
        await pool.execute(
            insert, tenant.merchant_id, 9, "credit_note", -4950, 0, row["invoice_id"],
            row["credit_note_id"],
        )  # fmt: skip
    carried = await pool.fetchrow(
        "SELECT invoice_id FROM credit_balance_movements WHERE merchant_id = $1"
        " AND kind = 'carried_forward'",
        tenant.merchant_id,
    )
    with pytest.raises(asyncpg.UniqueViolationError):  # an invoice carrying credit in twice
        await pool.execute(
            insert, tenant.merchant_id, 9, "carried_forward", 4950, 4950, carried["invoice_id"],
            None,
        )  # fmt: skip
    with pytest.raises(asyncpg.UniqueViolationError):  # a writer that skipped the lock
        await pool.execute(
            insert, tenant.merchant_id, 2, "applied_to_invoice", -1, 0, first["id"], None
        )
    with pytest.raises(asyncpg.CheckViolationError):  # spending what is not there
        await pool.execute(
            insert, tenant.merchant_id, 9, "applied_to_invoice", -1, -1, first["id"], None
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE credit_balances SET balance_minor = -1 WHERE merchant_id = $1",
            tenant.merchant_id,
        )


async def test_the_export_lists_every_movement(client: AsyncClient, operator: Tenant) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(client, operator)
    await advance(client, operator, clock, MID_JUNE)
    await _cancel_now(client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)
    response = await client.get(
        "/v1/finance/exports/credit_balance",
        params={
            "from": "2026-06-01",
            "to": "2026-06-30",
            "merchant_id": str(tenant.merchant_id),
            "include_test": "true",
        },
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [
        (r["seq"], r["kind"], r["amount"], r["amount_minor"], r["balance_after_minor"])
        for r in rows
    ] == [
        ("1", "carried_forward", "49.50", "4950", "4950"),
        ("2", "credit_note", "-49.50", "-4950", "0"),
    ]
    assert rows[1]["invoice_number"] == first["number"]
    assert rows[1]["credit_note_number"].startswith(first["number"])
    assert rows[0]["accounting_date"] == "2026-06-16"


# -- through Stripe (the stand-in) -----------------------------------------------------------


async def test_in_stripe_the_balance_lowers_what_an_open_invoice_collects(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, sub, clock, first = await _invoiced_in_june(stripe_client, operator, sync)
    await advance(stripe_client, operator, clock, MID_JUNE)
    await _cancel_now(stripe_client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)  # before Stripe heard of the first invoice
    await sync.settle()

    [stripe_invoice] = stripe_objects(sync.standin, "invoice", tenant.merchant_id)
    assert (stripe_invoice["status"], stripe_invoice["amount_paid"]) == ("paid", 4950)
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert (stripe_note["amount"], stripe_note["metadata"]["kefu_reason"]) == (
        4950,
        "credit_balance",
    )
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []
    row = await Invoice.objects().where(Invoice.id == uuid.UUID(first["id"])).first()
    assert row is not None
    assert (row.status, row.amount_paid_minor) == ("paid", 4950)


async def test_in_stripe_the_last_balance_is_refunded_against_the_latest_charge(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, sub, clock, _ = await _invoiced_in_june(stripe_client, operator, sync)
    await sync.settle()  # June's ¥99 charged
    await advance(stripe_client, operator, clock, MID_JUNE)
    await _cancel_now(stripe_client, tenant, sub["id"])
    await close_pass(tenant.merchant_id)
    await advance(stripe_client, operator, clock, AFTER_GRACE)
    await close_pass(tenant.merchant_id)
    await sync.settle()

    [refund] = stripe_refunds(sync.standin, tenant.merchant_id)
    assert refund["amount"] == 4950
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert stripe_note["refunds"][0]["refund"] == refund["id"]
    assert stripe_note["metadata"]["kefu_reason"] == "credit_balance"
    [note] = await CreditNote.objects().where(CreditNote.merchant_id == tenant.merchant_id)
    assert (note.reason, note.refund_status, note.stripe_refund_id) == (
        "credit_balance",
        "refunded",
        refund["id"],
    )
    assert (await _balance(stripe_client, tenant))["balance_minor"] == 0


async def test_only_the_balance_issues_credit_balance_notes_and_each_sees_its_own(
    client: AsyncClient, operator: Tenant, other_tenant: Tenant
) -> None:
    tenant, _, _, first = await _invoiced_in_june(client, operator)
    refused = await client.post(
        f"/v1/invoices/{first['id']}/credit-notes",
        json={"amount_minor": 100, "reason": "credit_balance"},
        headers=operator.headers,
    )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    unnamed = await client.get("/v1/credit-balance", headers=operator.headers)
    assert unnamed.status_code == 422
    assert unnamed.json()["field"] == "merchant_id"
    # a merchant key sees its own balance whatever merchant_id it sends
    own = await client.get(
        "/v1/credit-balance",
        params={"merchant_id": str(tenant.merchant_id)},
        headers=other_tenant.headers,
    )
    assert own.status_code == 200
    assert own.json()["merchant_id"] == str(other_tenant.merchant_id)
    unknown = await client.get(
        "/v1/credit-balance", params={"merchant_id": str(uuid.uuid4())}, headers=operator.headers
    )
    assert unknown.status_code == 404
