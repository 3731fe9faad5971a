"""Money edges through the API: one rounding per prorated line, SLA credits on a period billed
in part, quantities as plain decimals, no lines that net to zero."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from httpx import AsyncClient

from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import advance, amounts, close_pass, invoices_of, new_clock


async def _post(client: AsyncClient, url: str, tenant: Tenant, body: Any) -> dict[str, Any]:
    response = await client.post(url, json=body, headers=tenant.headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def test_an_addon_taken_mid_period_is_one_exact_line(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2026-06-01T00:00:00+08:00")
    tenant, sub = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await close_pass(tenant.merchant_id)  # June's fee, billed at once
    # June has 2,592,000 s; from 06-20 15:00, 896,400 remain: ¥39.60 × 896,400 / 2,592,000
    # is exactly ¥13.695, rounded half-up once: ¥13.70.
    await advance(client, operator, clock, "2026-06-20T15:00:00+08:00")
    changed = await _post(
        client, f"/v1/subscriptions/{sub['id']}/add-ons", tenant, {"addons": ["fast_response"]}
    )
    [line] = changed["pending_lines"]  # no −¥34.24 / +¥34.24 pair for the unchanged fee
    assert (line["kind"], line["charge_code"], line["amount_minor"]) == (
        "proration",
        "fast_response",
        1370,
    )
    assert line["quantity"] == "0.345833"
    assert line["explanation"] == (
        "charge for 10 d 9 h of 30 d (20 Jun 15:00 – 1 Jul, Asia/Shanghai): 34.58% of ¥39.60"
    )

    await advance(client, operator, clock, "2026-07-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    june = (await invoices_of(client, tenant))[-1]
    assert amounts(june) == [
        ("usage", "orders", 0),
        ("proration", "fast_response", 1370),
        ("fee", "monthly_fee", 9900),
        ("addon", "fast_response", 3960),
    ]


async def test_an_sla_credit_on_a_first_period_is_a_share_of_what_was_billed(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2026-06-16T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await close_pass(tenant.merchant_id)
    [first] = await invoices_of(client, tenant)
    assert amounts(first) == [("fee", "monthly_fee", 4950)]  # 15 of June's 30 days
    await advance(client, operator, clock, "2026-07-01T00:00:00+08:00")
    report = await _post(
        client,
        "/v1/sla-reports",
        operator,
        {
            "merchant_id": str(tenant.merchant_id),
            "period_start": "2026-06-16T00:00:00+08:00",
            "faults": [{"reference": "INC-9", "unresolved_hours": "30"}],
        },
    )
    assert report["applied_as"] == "pending"
    await advance(client, operator, clock, "2026-07-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    june = (await invoices_of(client, tenant))[-1]
    # 100% of that period's fees: the ¥49.50 billed for it, not a whole month's ¥99.00
    assert ("credit", "sla_fault_unresolved", -4950) in amounts(june)
    assert june["total_minor"] == 9900 - 4950
    [credit] = [line for line in june["lines"] if line["kind"] == "credit"]
    assert credit["explanation"].endswith("100% of the ¥49.50 fees for 2026-06-16 – 2026-07-01")


async def test_quantities_are_plain_decimals_in_json_and_files(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, plan="custom", test_clock_id=clock)
    await advance(client, operator, clock, "2026-03-31T23:59:00+08:00")
    events = [
        {
            "transaction_id": f"o-{n}",
            "metric": "orders",
            "occurred_at": "2026-03-10T10:00:00+08:00",
            "quantity": 1000,
        }
        for n in range(20)
    ]
    await _post(client, "/v1/usage/events/batch", tenant, {"events": events})
    summary = await client.get(
        "/v1/usage/summary", params={"period": "2026-03"}, headers=tenant.headers
    )
    assert summary.status_code == 200, summary.text
    orders = next(m for m in summary.json()["metrics"] if m["metric"] == "orders")
    assert orders["quantity"] == "20000"

    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    await close_pass(tenant.merchant_id)
    march = (await invoices_of(client, tenant))[-1]
    [usage] = [line for line in march["lines"] if line["charge_code"] == "orders"]
    assert usage["quantity"] == "20000"  # read back from PostgreSQL, which sends 2E+4

    workbook = await client.get(
        "/v1/finance/exports/invoice_lines",
        params={
            "from": "2026-04-01",
            "to": "2026-04-30",
            "format": "xlsx",
            "merchant_id": str(tenant.merchant_id),
            "include_test": "true",
        },
        headers=operator.headers,
    )
    assert workbook.status_code == 200, workbook.text
    with zipfile.ZipFile(io.BytesIO(workbook.content)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<v>20000</v>" in sheet
    assert "E+" not in sheet


async def test_the_first_period_after_a_trial_is_charged_its_exact_share_once(
    client: AsyncClient, operator: Tenant
) -> None:
    # The trial ends 06-30 22:48: the first paid period is 4,320 of June's 2,592,000 s, and
    # ¥99 × 4,320 / 2,592,000 is exactly ¥0.165 → ¥0.17.
    clock = await new_clock(client, operator, "2026-06-16T22:48:00+08:00")
    tenant, _ = await signup_tenant(
        client, operator, plan="basic", trial_days=14, test_clock_id=clock
    )
    await advance(client, operator, clock, "2026-06-30T22:48:00+08:00")
    await close_pass(tenant.merchant_id)
    [first] = await invoices_of(client, tenant)
    assert amounts(first) == [("fee", "monthly_fee", 17)]


async def test_a_first_period_fee_line_reads_in_the_merchants_zone(
    client: AsyncClient, operator: Tenant
) -> None:
    """A clock set in UTC (17:00 Z is 01:00 the next day in Shanghai): the line for people says
    the local date and time, names the zone, and gives the share in days and hours."""
    clock = await new_clock(client, operator, "2026-12-13T17:00:00Z")
    tenant, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await close_pass(tenant.merchant_id)  # the first period's fee, billed at once
    (first,) = await invoices_of(client, tenant)
    (line,) = first["lines"]
    assert line["explanation"] == (
        "¥99.00 for 2026-12, billed in advance; first period 17 d 23 h of 31 d "
        "(14 Dec 2026 01:00 – 1 Jan 2027, Asia/Shanghai): 57.93% of the period"
    )
