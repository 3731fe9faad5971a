"""``billing demo``: three merchants (basic, advanced, custom) through two simulated months.

Everything goes through the real HTTP API (in process) and the real period close: signup on a
test clock, orders and GMV through the metered billing API, an SLA report, an upgrade with
proration, a late event, then the invoices printed with every line explained.

It runs in a PostgreSQL cluster of its own, in a temporary directory, deleted when the demo
ends, and against the local Stripe stand-in: the user's database (merchants, keys, catalog
mapping, reconciliation runs) and Stripe account are never touched.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from plans.money import format_minor
from plans.periods import zone
from service.db import embedded
from service.db.engine import current as current_database
from service.invoicing import close
from service.settings import DatabaseSettings, Settings, StripeSettings
from service.tenancy import keys
from service.tenancy.principal import SYSTEM_ACTOR, Role

SEPTEMBER = "2026-09-01T00:00:00+08:00"


class DemoError(RuntimeError):
    pass


def run_isolated(settings: Settings, console: Console, *, verbose: bool = False) -> None:
    """The demo in a throw-away embedded PostgreSQL, whatever ``DATABASE_URL`` says, and with
    the Stripe stand-in, whatever ``STRIPE_API_KEY`` says. The cluster's files are deleted
    when this process exits."""
    from service.app import create_app
    from service.command import run_with_database
    from webhooks.demo import run as run_with_stripe

    data_dir = Path(tempfile.mkdtemp(prefix="kefu-billing-demo-"))
    # Registered before the server starts, so it runs after the server's own exit hook (which
    # stops it and deletes its files): nothing of the demo is left behind.
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    if verbose:
        console.print(f"demo database: a new embedded PostgreSQL in {data_dir}", markup=False)
    admin_dsn = embedded.start(data_dir, delete_on_exit=True)
    own = dataclasses.replace(
        settings,
        database=DatabaseSettings(url=admin_dsn, data_dir=data_dir, pool_max=8),
        stripe=StripeSettings(),
    )
    console.print(
        "[bold]billing demo[/bold]: a throw-away database and a local Stripe stand-in;"
        " your data and your Stripe account are not touched"
    )

    async def work() -> list[dict[str, Any]]:
        return await run_with_stripe(own, console, run, create_app, print_invoices)

    run_with_database(own, work, pool_max=8, migrates=True)


class _Api:
    def __init__(self, client: httpx.AsyncClient, operator_key: str) -> None:
        self.client = client
        self.operator = {"Authorization": f"Bearer {operator_key}"}

    async def call(
        self, method: str, path: str, *, key: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        response = await self.client.request(method, path, headers=key or self.operator, **kwargs)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path} → {response.status_code}: {response.text}")
        return response.json()

    async def advance(self, clock_id: str, to: str) -> None:
        await self.call("POST", f"/v1/test-clocks/{clock_id}/advance", json={"frozen_time": to})

    async def orders(
        self,
        key: dict[str, str],
        prefix: str,
        *,
        orders: int,
        at: str,
        gmv_minor: int = 0,
        per_event: int = 100,
    ) -> None:
        events = []
        for n in range(orders // per_event):
            event: dict[str, Any] = {
                "transaction_id": f"{prefix}-{n}",
                "metric": "orders",
                "occurred_at": at,
                "quantity": per_event,
            }
            if gmv_minor:
                event["gmv"] = {
                    "amount_minor": gmv_minor // (orders // per_event),
                    "currency": "CNY",
                }
            events.append(event)
        result = await self.call("POST", "/v1/usage/events/batch", key=key, json={"events": events})
        if result["accepted"] != len(events):
            raise DemoError(f"usage not accepted: {result}")


class DemoPayments(Protocol):
    """What happens at Stripe during the story (``webhooks.demo``): merchants save a card or
    pay their sent invoices there, and the worker's Stripe pass runs."""

    async def after_signup(self, merchants: dict[str, dict[str, Any]]) -> None: ...

    async def after_close(self, merchants: dict[str, dict[str, Any]]) -> None: ...


async def run(
    settings: Settings, app: Any, console: Console, payments: DemoPayments | None = None
) -> list[dict[str, Any]]:
    """Drive the demo; returns every invoice made, in order."""
    async with current_database().engine.transaction():
        issued = await keys.issue(
            role=Role.OPERATOR, merchant_id=None, scopes=None, name="demo", actor=SYSTEM_ACTOR
        )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        api = _Api(client, issued.secret)
        tag = uuid.uuid4().hex[:6]
        clock = await api.call(
            "POST", "/v1/test-clocks", json={"frozen_time": SEPTEMBER, "name": f"demo {tag}"}
        )
        merchants: dict[str, dict[str, Any]] = {}
        for plan, name, extra in (
            ("basic", "小李卡券店", {"addons": ["fast_response"]}),
            ("advanced", "星河游戏充值", {}),
            (
                "custom",
                "云端软件商城",
                {
                    "contract_overrides": {
                        "orders": {"unit_price": "0.15"},
                        "gmv_fee": {"rate": "0.0025"},
                    },
                    # Its contract pays by bank transfer: every invoice sent, due in 30 days.
                    "payment_terms": {"collection": "send_invoice", "days_until_due": 30},
                },
            ),
        ):
            made = await api.call(
                "POST",
                "/v1/signup",
                key={**api.operator, "Idempotency-Key": f"demo-{tag}-{plan}"},
                json={
                    "merchant": {"name": f"{name} {tag}", "contact_email": f"{plan}-{tag}@demo.cn"},
                    "plan": plan,
                    "trial_days": 0,
                    "test_clock_id": clock["id"],
                    **extra,
                },
            )
            merchants[plan] = {
                "key": {"Authorization": f"Bearer {made['api_key']['key']}"},
                "merchant_id": made["merchant"]["id"],
                "subscription_id": made["subscription"]["id"],
                "name": made["merchant"]["name"],
                "payment_setup_url": made["payment_setup"]["url"],
            }
        console.print(
            f"[bold]Signed up[/bold] 3 merchants on test clock {clock['id']} (it reads {SEPTEMBER})"
        )
        if payments is not None:
            await payments.after_signup(merchants)

        await api.advance(clock["id"], "2026-09-30T20:00:00+08:00")
        await api.orders(
            merchants["basic"]["key"], "sep-b", orders=3_600, at="2026-09-18T10:00:00+08:00"
        )
        await api.orders(
            merchants["advanced"]["key"], "sep-a", orders=16_000, at="2026-09-18T10:00:00+08:00"
        )
        await api.orders(
            merchants["custom"]["key"],
            "sep-c",
            orders=20_000,
            gmv_minor=35_000_000,
            at="2026-09-18T10:00:00+08:00",
            per_event=1_000,
        )
        await api.call(
            "POST",
            "/v1/usage/events",
            key=merchants["custom"]["key"],
            json={
                "transaction_id": "sep-c-hours",
                "metric": "support_hours",
                "occurred_at": "2026-09-20T15:00:00+08:00",
                "quantity": "12",
            },
        )
        await api.call(
            "POST",
            "/v1/sla-reports",
            json={
                "merchant_id": merchants["advanced"]["merchant_id"],
                "period_start": SEPTEMBER,
                "csat": "0.87",
                "first_response_seconds": "410",
            },
        )
        console.print(
            "September: 3,600 / 16,000 / 20,000 orders (custom: ¥350,000 GMV, "
            "12 support hours); advanced's CSAT 87% reported"
        )

        await api.advance(clock["id"], "2026-10-03T00:00:00+08:00")  # past the grace window
        await _close(merchants, settings)
        if payments is not None:
            await payments.after_close(merchants)
        await api.advance(clock["id"], "2026-10-16T00:00:00+08:00")
        await api.call(
            "POST",
            f"/v1/subscriptions/{merchants['basic']['subscription_id']}/change-plan",
            key=merchants["basic"]["key"],
            json={"plan": "advanced", "addons": []},
        )
        console.print("October 16: basic upgrades to advanced (prorated)")
        await api.advance(clock["id"], "2026-10-31T20:00:00+08:00")
        await api.orders(
            merchants["basic"]["key"], "oct-b", orders=9_000, at="2026-10-25T10:00:00+08:00"
        )
        await api.orders(
            merchants["advanced"]["key"], "oct-a", orders=14_200, at="2026-10-25T10:00:00+08:00"
        )
        await api.orders(
            merchants["custom"]["key"],
            "oct-c",
            orders=18_000,
            gmv_minor=27_000_000,
            at="2026-10-25T10:00:00+08:00",
            per_event=1_000,
        )
        await api.orders(
            merchants["custom"]["key"], "sep-c-late", orders=500, at="2026-09-30T23:00:00+08:00"
        )
        console.print("October usage, and 500 September orders that arrive late for custom")
        await api.advance(clock["id"], "2026-11-03T00:00:00+08:00")
        await _close(merchants, settings)
        if payments is not None:
            await payments.after_close(merchants)

        invoices = []
        for plan, merchant in merchants.items():
            listed = await api.call("GET", "/v1/invoices", key=merchant["key"])
            for item in sorted(listed, key=lambda i: i["number"]):
                full = await api.call("GET", f"/v1/invoices/{item['id']}", key=merchant["key"])
                invoices.append({**full, "merchant_name": merchant["name"], "tier": plan})
        return invoices


async def _close(merchants: dict[str, dict[str, Any]], settings: Settings) -> None:
    for merchant in merchants.values():
        await close.run_pass(
            system_now=datetime.now(UTC),
            grace=timedelta(hours=settings.usage_grace_hours),
            tax_rate=settings.tax_rate,
            merchant_id=uuid.UUID(merchant["merchant_id"]),
        )


def print_invoices(console: Console, invoices: Sequence[dict[str, Any]]) -> None:
    for invoice in invoices:
        currency = invoice["currency"]
        table = RichTable(
            title=(
                escape(
                    f"{invoice['number']}  {invoice['merchant_name']} ({invoice['tier']})  "
                    f"{_local(invoice['period_start'])} – {_local(invoice['period_end'])} "
                    f"{DEMO_ZONE}  [{invoice['status']}]"
                )
            ),
            title_justify="left",
            show_lines=False,
        )
        table.add_column("line")
        table.add_column("explanation")
        table.add_column("amount", justify="right")
        for line in invoice["lines"]:
            table.add_row(
                escape(line["description"]),
                escape(line["explanation"]),
                format_minor(line["amount_minor"], currency),
            )
        table.add_row(
            "",
            "[bold]total[/bold]",
            f"[bold]{format_minor(invoice['total_minor'], currency)}[/bold]",
        )
        console.print(table)
        collection = _collection(invoice)
        if collection:
            console.print(f"  {escape(collection)}", highlight=False)


def _collection(invoice: dict[str, Any]) -> str:
    """How the invoice was collected, for people (nothing before it reached Stripe)."""
    method = invoice.get("collection_method")
    if method == "charge_automatically":
        return "charged to the card the merchant saved"
    if method != "send_invoice":
        return ""
    due = f", due {_local(invoice['due_at'])[:10]}" if invoice.get("due_at") else ""
    said = f"sent to the merchant{due}"
    if invoice.get("payment_url"):
        said += f"; pay at {invoice['payment_url']}"
    return said


DEMO_ZONE = "Asia/Shanghai"


def _local(instant: str) -> str:
    """The demo's merchants live in Asia/Shanghai: their times are printed there (named)."""
    return f"{datetime.fromisoformat(instant).astimezone(zone(DEMO_ZONE)):%Y-%m-%d %H:%M}"
