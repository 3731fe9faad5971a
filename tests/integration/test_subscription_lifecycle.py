"""One merchant through signup → trial → active → upgrade mid-month → downgrade scheduled →
period end → cancel at period end, on a test clock, against hand-worked figures."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.usage_helpers import advance, at, new_clock


async def _get(client: AsyncClient, tenant: Tenant, sub_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/subscriptions/{sub_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _same_instant(a: str, b: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


async def test_full_lifecycle_on_a_test_clock(client: AsyncClient, operator: Tenant) -> None:
    clock_id = await new_clock(client, operator, "2026-01-10T00:00:00")
    tenant, sub = await signup_tenant(
        client, operator, plan="basic", trial_days=14, test_clock_id=clock_id
    )
    sub_id = sub["id"]
    # Trial: 14 days from Jan 10 00:00 (Shanghai) is Jan 24 00:00; nothing charged yet.
    assert sub["status"] == "trialing"
    assert _same_instant(sub["trial_end"], at("2026-01-24T00:00:00"))
    assert _same_instant(sub["current_period_start"], at("2026-01-10T00:00:00"))
    assert _same_instant(sub["current_period_end"], at("2026-01-24T00:00:00"))
    assert sub["pending_lines"] == []

    # Trial ends: active, first period Jan 24 – Feb 1 (8 of January's 31 days).
    await advance(client, operator, clock_id, "2026-01-24T00:00:00")
    sub = await _get(client, tenant, sub_id)
    assert sub["status"] == "active"
    assert _same_instant(sub["current_period_start"], at("2026-01-24T00:00:00"))
    assert _same_instant(sub["current_period_end"], at("2026-02-01T00:00:00"))
    # ¥99 × 8/31 = ¥25.548… → 2,555 fen, billed in advance.
    assert [line["amount_minor"] for line in sub["pending_lines"]] == [2555]

    # Upgrade on Jan 27 at noon: 4.5 of January's 31 days remain.
    await advance(client, operator, clock_id, "2026-01-27T12:00:00")
    quote = await client.post(
        f"/v1/subscriptions/{sub_id}/change-quote",
        json={"plan": "advanced"},
        headers=tenant.headers,
    )
    assert quote.status_code == 200, quote.text
    quoted = quote.json()
    # Credit basic: 9,900 − round(9,900 × 26.5/31 = 8,462.90) = 9,900 − 8,463 = 1,437.
    # Charge advanced: 30,000 − round(30,000 × 26.5/31 = 25,645.16) = 30,000 − 25,645 = 4,355.
    assert [line["amount_minor"] for line in quoted["proration_lines"]] == [-1437, 4355]
    assert quoted["proration_net_minor"] == 2918
    assert quoted["takes_effect"] == "now"
    assert (await _get(client, tenant, sub_id))["plan_code"] == "basic"  # a quote changes nothing

    upgraded = await client.post(
        f"/v1/subscriptions/{sub_id}/change-plan",
        json={"plan": "advanced"},
        headers=tenant.headers,
    )
    assert upgraded.status_code == 200, upgraded.text
    sub = upgraded.json()
    assert sub["plan_code"] == "advanced"
    assert [line["amount_minor"] for line in sub["pending_lines"]] == [2555, -1437, 4355]

    # Downgrade back to basic: scheduled for the period end, nothing prorated.
    await advance(client, operator, clock_id, "2026-01-29T00:00:00")
    downgraded = await client.post(
        f"/v1/subscriptions/{sub_id}/change-plan",
        json={"plan": "basic"},
        headers=tenant.headers,
    )
    assert downgraded.status_code == 200, downgraded.text
    sub = downgraded.json()
    assert sub["plan_code"] == "advanced"
    assert sub["scheduled_change"]["plan_code"] == "basic"
    assert _same_instant(sub["scheduled_change"]["effective_at"], at("2026-02-01T00:00:00"))
    assert len(sub["pending_lines"]) == 3

    # Period end: the downgrade applies, February begins.
    await advance(client, operator, clock_id, "2026-02-01T00:00:00")
    sub = await _get(client, tenant, sub_id)
    assert sub["plan_code"] == "basic"
    assert sub["scheduled_change"] is None
    assert _same_instant(sub["current_period_start"], at("2026-02-01T00:00:00"))
    assert _same_instant(sub["current_period_end"], at("2026-03-01T00:00:00"))

    # Cancel at period end; still active until March 1, then canceled.
    canceled = await client.post(
        f"/v1/subscriptions/{sub_id}/cancel",
        json={"at_period_end": True},
        headers=tenant.headers,
    )
    assert canceled.status_code == 200
    assert canceled.json()["cancel_at_period_end"] is True
    assert canceled.json()["status"] == "active"
    await advance(client, operator, clock_id, "2026-03-01T00:00:00")
    sub = await _get(client, tenant, sub_id)
    assert sub["status"] == "canceled"
    assert _same_instant(sub["canceled_at"], at("2026-03-01T00:00:00"))

    kinds = [(e["kind"], e["from_status"], e["to_status"]) for e in sub["events"]]
    assert kinds == [
        ("created", None, "trialing"),
        ("status_changed", "trialing", "active"),
        ("plan_changed", None, None),
        ("change_scheduled", None, None),
        ("plan_changed", None, None),
        ("period_started", None, None),
        ("cancel_scheduled", None, None),
        ("status_changed", "active", "canceled"),
    ]
    assert sub["events"][2]["actor_role"] == "merchant"
    assert sub["events"][1]["actor_role"] == "system"


async def test_upgrade_then_downgrade_now_nets_to_what_was_used(
    client: AsyncClient, operator: Tenant
) -> None:
    clock_id = await new_clock(client, operator, "2026-04-01T00:00:00")
    tenant, sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock_id)
    sub_id = sub["id"]
    # April has 30 days. Upgrade on the 11th, downgrade (now) on the 21st.
    await advance(client, operator, clock_id, "2026-04-11T00:00:00")
    up = await client.post(
        f"/v1/subscriptions/{sub_id}/change-plan", json={"plan": "advanced"}, headers=tenant.headers
    )
    assert up.status_code == 200
    await advance(client, operator, clock_id, "2026-04-21T00:00:00")
    down = await client.post(
        f"/v1/subscriptions/{sub_id}/change-plan",
        json={"plan": "basic", "when": "now"},
        headers=tenant.headers,
    )
    assert down.status_code == 200
    total = sum(line["amount_minor"] for line in down.json()["pending_lines"])
    # Used: basic for 20 days, advanced for 10: 9,900 × 20/30 + 30,000 × 10/30 = 6,600 + 10,000.
    assert total == 16_600


async def test_the_list_shows_each_subscription_its_own_waiting_lines(
    client: AsyncClient, operator: Tenant
) -> None:
    clock_id = await new_clock(client, operator, "2026-01-24T00:00:00")
    upgraded, upgraded_sub = await signup_tenant(
        client, operator, plan="basic", test_clock_id=clock_id, name="Upgrades"
    )
    plain, plain_sub = await signup_tenant(
        client, operator, plan="basic", test_clock_id=clock_id, name="Stays"
    )
    await advance(client, operator, clock_id, "2026-01-27T12:00:00")
    changed = await client.post(
        f"/v1/subscriptions/{upgraded_sub['id']}/change-plan",
        json={"plan": "advanced"},
        headers=upgraded.headers,
    )
    assert changed.status_code == 200, changed.text
    listed = await client.get("/v1/subscriptions", headers=operator.headers)
    assert listed.status_code == 200
    by_id = {sub["id"]: sub for sub in listed.json()}
    for tenant, sub_id, lines in (
        (upgraded, upgraded_sub["id"], 3),  # first period, then the upgrade's credit and charge
        (plain, plain_sub["id"], 1),  # first period only
    ):
        alone = await _get(client, tenant, sub_id)
        assert len(alone["pending_lines"]) == lines
        assert by_id[sub_id]["pending_lines"] == alone["pending_lines"]
    merchant_view = await client.get("/v1/subscriptions", headers=plain.headers)
    assert [sub["id"] for sub in merchant_view.json()] == [plain_sub["id"]]
