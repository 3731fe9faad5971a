# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Refunds that cannot strand, against a stand-in that is no kinder than Stripe.

A credit note on a paid invoice makes its refund in the same Stripe request (``refund_amount``):
whatever fails, Stripe holds both or neither, and a retry finds what exists before making more.
A row Stripe refuses is parked, visible with its reason and what it made already; a person
retries, skips or resolves it. A parked row holds back only the rows about the same thing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from service import stripe_outbox
from service.db.tables import AuditEntry, CreditNote, Invoice, Refund, StripeOutbox
from service.tenancy.principal import COMMAND_LINE_ACTOR
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, close_pass, new_clock
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
from tests.integration.test_stripe_sync import paid_invoice
from webhooks import outbox

CREDIT_NOTES = "/v1/credit_notes"


async def _credit(client: httpx.AsyncClient, operator: Tenant, invoice: Invoice) -> UUID:
    response = await client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"amount_minor": 1000, "reason": "sla_credit", "memo": "outage"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _rows(merchant_id: UUID) -> list[StripeOutbox]:
    return await (
        StripeOutbox.objects()
        .where(StripeOutbox.merchant_id == merchant_id)
        .order_by(StripeOutbox.id)
    )


async def _push_row(merchant_id: UUID) -> StripeOutbox:
    [row] = [r for r in await _rows(merchant_id) if r.command == "credit_note.push"]
    return row


async def _note(note_id: UUID) -> CreditNote:
    note = await CreditNote.objects().where(CreditNote.id == note_id).first()
    assert note is not None
    return note


async def _assert_one_refund_and_its_credit_note(sync: Sync, tenant: Tenant, note_id: UUID) -> None:
    [refund] = stripe_refunds(sync.standin, tenant.merchant_id)
    assert refund["amount"] == 1000
    [stripe_note] = stripe_objects(sync.standin, "credit_note", tenant.merchant_id)
    assert [r["refund"] for r in stripe_note["refunds"]] == [refund["id"]]
    note = await _note(note_id)
    assert (note.stripe_credit_note_id, note.stripe_refund_id) == (stripe_note["id"], refund["id"])
    assert note.refund_status == "refunded"
    [ours] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert (ours.stripe_refund_id, ours.credit_note_id, ours.amount_minor) == (
        refund["id"],
        note_id,
        1000,
    )


async def test_the_credit_note_push_expands_the_invoice_payments_it_refunds(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    """Done when: Stripe answers ``Invoice.payments`` only when expanded. The push that read the
    invoice without ``expand=["payments"]`` found no payment and retried forever."""
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    note_id = await _credit(stripe_client, operator, invoice)
    await sync.settle()
    await _assert_one_refund_and_its_credit_note(sync, tenant, note_id)
    assert {row.status for row in await _rows(tenant.merchant_id)} == {"sent"}


async def test_a_refused_credit_note_strands_no_refund_and_parks_visibly_until_retried(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    note_id = await _credit(stripe_client, operator, invoice)
    sync.standin.fail_next(1, status=400, method="POST", path_prefix=CREDIT_NOTES)
    await sync.settle()

    row = await _push_row(tenant.merchant_id)
    assert row.status == "parked"
    assert "400" in (row.last_error or "")
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []  # one request: nothing made
    assert await Refund.objects().where(Refund.merchant_id == tenant.merchant_id) == []
    listed = await stripe_outbox.rows(status="parked", merchant_id=tenant.merchant_id)
    assert [r["id"] for r in listed] == [row.id]

    assert await stripe_outbox.requeue(row.id, now=datetime.now(UTC))
    await sync.settle()
    await _assert_one_refund_and_its_credit_note(sync, tenant, note_id)


async def test_stripe_down_between_the_two_calls_makes_nothing_until_it_is_back(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    note_id = await _credit(stripe_client, operator, invoice)
    # The invoice is read; then Stripe is down for the credit note.
    sync.standin.start_outage(status=503, path_prefix=CREDIT_NOTES)
    now = datetime.now(UTC)
    for hour in range(3):
        await sync.stripe_sync.run_pass(now=now + timedelta(hours=hour), merchant_ids=[
            tenant.merchant_id])  # fmt: skip
    row = await _push_row(tenant.merchant_id)
    assert (row.status, row.attempts) == ("pending", 3)
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []
    sync.standin.end_outage()
    await sync.settle(now=now + timedelta(hours=4))
    await _assert_one_refund_and_its_credit_note(sync, tenant, note_id)


async def test_an_answer_lost_after_stripe_refunded_is_replayed_not_refunded_again(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    note_id = await _credit(stripe_client, operator, invoice)
    sync.standin.fail_next(1, status="lost", method="POST", path_prefix=CREDIT_NOTES)
    now = datetime.now(UTC)
    await sync.stripe_sync.run_pass(now=now, merchant_ids=[tenant.merchant_id])
    assert len(stripe_refunds(sync.standin, tenant.merchant_id)) == 1  # made, never heard of
    assert (await _note(note_id)).stripe_credit_note_id is None
    await sync.settle(now=now + timedelta(minutes=5))
    await _assert_one_refund_and_its_credit_note(sync, tenant, note_id)


async def _refund_left_by_an_earlier_push(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> tuple[Tenant, UUID, StripeOutbox]:
    """The state the two-step push could leave: a refund tagged with our credit note in Stripe,
    the credit note refused after it, the row parked."""
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    note_id = await _credit(stripe_client, operator, invoice)
    sync.standin.fail_next(1, status=500, method="POST", path_prefix=CREDIT_NOTES)
    now = datetime.now(UTC)
    await sync.stripe_sync.run_pass(now=now, merchant_ids=[tenant.merchant_id])
    row = await _push_row(tenant.merchant_id)
    intent = sync.standin.objects("payment_intent")[0]["id"]
    stripe_invoice = await Invoice.objects().where(Invoice.id == invoice.id).first()
    assert stripe_invoice is not None
    sync.standin.sdk_client().v1.refunds.create(
        params={
            "payment_intent": intent,
            "amount": 1000,
            "metadata": {
                "kefu_credit_note_id": str(note_id),
                "kefu_invoice_id": str(invoice.id),
                "kefu_merchant_id": str(tenant.merchant_id),
            },
        },
        options={"idempotency_key": f"{row.idempotency_key}:refund"},
    )
    sync.standin.fail_next(1, status=400, method="POST", path_prefix=CREDIT_NOTES)
    await sync.settle(now=now + timedelta(minutes=5))
    row = await _push_row(tenant.merchant_id)
    assert row.status == "parked"
    return tenant, note_id, row


async def test_a_refund_left_before_a_refused_credit_note_shows_on_the_parked_row(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _, row = await _refund_left_by_an_earlier_push(stripe_client, operator, sync)
    [refund] = stripe_refunds(sync.standin, tenant.merchant_id)
    assert _json(row.stripe_ids) == {"refund": refund["id"]}
    assert "400" in (row.last_error or "")


async def test_a_retry_links_the_refund_an_earlier_attempt_made_instead_of_refunding_again(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, note_id, row = await _refund_left_by_an_earlier_push(stripe_client, operator, sync)
    assert await stripe_outbox.requeue(row.id, now=datetime.now(UTC))
    await sync.settle(now=datetime.now(UTC) + timedelta(minutes=10))
    await _assert_one_refund_and_its_credit_note(sync, tenant, note_id)


async def test_resolving_records_the_refund_stripe_holds_and_makes_nothing(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, note_id, row = await _refund_left_by_an_earlier_push(stripe_client, operator, sync)
    credit_notes_before = sync.standin.count("credit_note")
    recorded = await outbox.resolve(
        sync.stripe_sync.gateway,
        row.id,
        reason="refund seen in the dashboard; no Stripe credit note needed",
        actor=COMMAND_LINE_ACTOR,
        now=datetime.now(UTC),
    )
    [refund] = stripe_refunds(sync.standin, tenant.merchant_id)
    assert recorded["refund"] == refund["id"]
    assert sync.standin.count("credit_note") == credit_notes_before  # nothing made
    done = await _push_row(tenant.merchant_id)
    assert (done.status, done.resolution) == (
        "resolved",
        "refund seen in the dashboard; no Stripe credit note needed",
    )
    note = await _note(note_id)
    assert (note.stripe_refund_id, note.refund_status) == (refund["id"], "refunded")
    [ours] = await Refund.objects().where(Refund.merchant_id == tenant.merchant_id)
    assert ours.stripe_refund_id == refund["id"]
    [entry] = await AuditEntry.objects().where(AuditEntry.entity == "stripe_outbox").where(
        AuditEntry.entity_id == str(row.id))  # fmt: skip
    assert (entry.action, entry.actor_role, entry.merchant_id) == (
        "resolve",
        "command_line",
        tenant.merchant_id,
    )


async def test_resolving_a_row_stripe_has_nothing_for_leaves_it_parked_and_says_what_is_missing(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    await _credit(stripe_client, operator, invoice)
    sync.standin.fail_next(1, status=400, method="POST", path_prefix=CREDIT_NOTES)
    await sync.settle()
    row = await _push_row(tenant.merchant_id)
    with pytest.raises(outbox.NotResolved, match="skip"):
        await outbox.resolve(
            sync.stripe_sync.gateway,
            row.id,
            reason="done by hand",
            actor=COMMAND_LINE_ACTOR,
            now=datetime.now(UTC),
        )
    assert (await _push_row(tenant.merchant_id)).status == "parked"
    assert stripe_refunds(sync.standin, tenant.merchant_id) == []


async def test_skipping_a_parked_row_is_audited_and_lets_its_invoice_rows_go_on(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, invoice = await paid_invoice(stripe_client, operator, sync)
    first = await _credit(stripe_client, operator, invoice)
    sync.standin.fail_next(1, status=400, method="POST", path_prefix=CREDIT_NOTES)
    await sync.settle()
    second = await _credit(stripe_client, operator, invoice)  # the same invoice: it waits
    await sync.settle()
    rows = [r for r in await _rows(tenant.merchant_id) if r.command == "credit_note.push"]
    assert [r.status for r in rows] == ["parked", "pending"]

    assert await stripe_outbox.skip(
        rows[0].id,
        reason="refunded by bank transfer, ticket 4711",
        actor=COMMAND_LINE_ACTOR,
        now=datetime.now(UTC),
    )
    await sync.settle()
    rows = [r for r in await _rows(tenant.merchant_id) if r.command == "credit_note.push"]
    assert [(r.status, r.resolution) for r in rows] == [
        ("skipped", "refunded by bank transfer, ticket 4711"),
        ("sent", None),
    ]
    assert (await _note(first)).stripe_credit_note_id is None
    assert (await _note(second)).refund_status == "refunded"
    [entry] = await AuditEntry.objects().where(AuditEntry.entity == "stripe_outbox").where(
        AuditEntry.entity_id == str(rows[0].id))  # fmt: skip
    assert entry.action == "skip"
    assert _json(entry.changes)["reason"] == "refunded by bank transfer, ticket 4711"
    assert not await stripe_outbox.skip(
        rows[1].id, reason="again", actor=COMMAND_LINE_ACTOR, now=datetime.now(UTC)
    )  # only parked rows are skipped


async def test_a_parked_row_holds_back_rows_about_its_invoice_and_no_others(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    """The rule: a row waits for every earlier unsent row of its merchant, except a parked one
    about something else (and the rows that one holds back). A refused credit note on March's
    invoice must not keep April's from being collected; a second credit note on March waits."""
    clock = await new_clock(stripe_client, operator, "2026-03-10T00:00:00+08:00")
    tenant, _ = await signup_tenant(stripe_client, operator, plan="basic", test_clock_id=clock)
    sync.merchant_ids.append(tenant.merchant_id)
    await add_card(sync, tenant.merchant_id)
    await close_pass(tenant.merchant_id)
    await sync.settle()
    [march] = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id)
    assert march.status == "paid"

    await _credit(stripe_client, operator, march)
    sync.standin.fail_next(1, status=400, method="POST", path_prefix=CREDIT_NOTES)
    await sync.settle()
    await _credit(stripe_client, operator, march)
    await advance(stripe_client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    await sync.settle()

    invoices = await Invoice.objects().where(Invoice.merchant_id == tenant.merchant_id)
    later = [i for i in invoices if i.id != march.id]
    assert later
    assert all(i.status == "paid" and i.stripe_invoice_id for i in later)
    by_command: dict[str, list[Any]] = {}
    for row in await _rows(tenant.merchant_id):
        by_command.setdefault(row.command, []).append(row.status)
    assert by_command["credit_note.push"] == ["parked", "pending"]
    assert set(by_command["invoice.push"]) == {"sent"}

    parked = await _push_row_parked(tenant.merchant_id)
    assert await stripe_outbox.requeue(parked, now=datetime.now(UTC))
    await sync.settle()
    statuses = [r.status for r in await _rows(tenant.merchant_id)]
    assert set(statuses) == {"sent"}
    assert len(stripe_refunds(sync.standin, tenant.merchant_id)) == 2


async def _push_row_parked(merchant_id: UUID) -> int:
    [row] = [r for r in await _rows(merchant_id) if r.status == "parked"]
    return row.id
