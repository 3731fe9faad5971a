"""Preview ≡ invoice, as a property (hypothesis): for random plans, add-ons, trials, usage, SLA
reports, plan and add-on changes, cancellations and late usage on a test clock, at every period
end the upcoming invoices taken just before the close are the invoices the close then makes,
line by line and to the fen, tax included.

Bounded for ``make test``: a fixed number of examples (``PREVIEW_PROPERTY_EXAMPLES``, 50 by
default; 12 on the Citus cluster of ``make test-citus``, where each example runs several times
slower), derandomized so CI runs the same ones every time (set the variable to run more, at
random), no deadline, and a database of its own cleaned between examples, so an example sees
nothing of the one before and a failing one shrinks and replays alike.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.catalog import store as catalog_store
from service.db import engine as db_engine
from service.db.engine import Database
from service.db.migrate import migrate
from service.invoicing import close, preview
from service.tenancy.principal import Role
from tests import citus_cluster
from tests.integration.conftest import Tenant, issue_key
from tests.integration.invoicing_helpers import INVOICE_FIELDS, LINE_FIELDS

SHANGHAI = ZoneInfo("Asia/Shanghai")
GRACE = timedelta(hours=48)
EXAMPLES = int(
    os.environ.get(
        "PREVIEW_PROPERTY_EXAMPLES", "12" if citus_cluster.SUITE_ON_CITUS in os.environ else "50"
    )
)
COMMON_ADDONS = ["emergency_response", "complexity", "tooling_bundle", "bring_your_own_system"]
BASIC_ADDONS = [*COMMON_ADDONS, "standard_response", "fast_response"]
# Everything a scenario writes; the catalog and the migrations' own table stay.
_KEPT = ("migration", "plan_versions")
_PLATFORM_TENANT = """
INSERT INTO merchants (id, name, contact_email, timezone, currency, status)
VALUES ('00000000-0000-0000-0000-000000000001', 'Kefu platform (not a customer)', '',
        'UTC', 'CNY', 'closed')
"""


@pytest.fixture(scope="module")
async def own_database(database: Database) -> AsyncIterator[Database]:
    """A database for this module alone, made current while its tests run."""
    name = f"preview_{uuid.uuid4().hex[:8]}"
    dsn = db_engine._with_database(database.dsn, name)
    await citus_cluster.prepare_database(dsn)
    previous = db_engine.current()
    other = db_engine.connect(dsn)
    try:
        await migrate(other, shard_count=citus_cluster.SHARD_COUNT)
        await other.start_pool(min_size=1, max_size=8)
        await catalog_store.publish_shipped()
        yield other
    finally:
        await other.close()
        db_engine.rebind(previous)
        await citus_cluster.drop_database(other.dsn)


async def _clean(database: Database) -> None:
    tables = await database.pool.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND c.relname <> ALL($1::text[])",
        list(_KEPT),
    )
    names = ", ".join(f'"{row["relname"]}"' for row in tables)
    async with database.pool.acquire() as connection, connection.transaction():
        await connection.execute(f"TRUNCATE {names} CASCADE")
        await connection.execute(_PLATFORM_TENANT)


# -- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    at: float
    """When in the period, as a share of it (ops run in this order)."""
    kind: str
    args: dict[str, Any]


_GROUPS = {"standard_response": "response_time", "fast_response": "response_time",
           "emergency_response": "response_time", "tooling_bundle": "tooling",
           "bring_your_own_system": "tooling"}  # fmt: skip


def _valid(addons: list[str]) -> list[str]:
    """The add-ons kept in order, at most one of each exclusive group (as the catalog says)."""
    kept: list[str] = []
    for addon in addons:
        group = _GROUPS.get(addon)
        if group is None or all(_GROUPS.get(k) != group for k in kept):
            kept.append(addon)
    return sorted(kept)


def _addons(plan: str) -> st.SearchStrategy[list[str]]:
    pool = BASIC_ADDONS if plan == "basic" else COMMON_ADDONS
    return st.lists(st.sampled_from(pool), max_size=2, unique=True).map(_valid)


@st.composite
def _op(draw: st.DrawFn) -> Op:
    at = draw(st.floats(0.02, 0.98))
    kind = draw(
        st.sampled_from(
            ["usage", "usage", "usage", "hours", "change_plan", "addons", "sla", "cancel_end",
             "cancel_now"]
        )
    )  # fmt: skip
    args: dict[str, Any] = {}
    if kind == "usage":
        args = {"orders": draw(st.integers(1, 20_000)), "gmv": draw(st.integers(0, 60_000_000))}
    elif kind == "hours":
        args = {"hours": str(draw(st.integers(1, 40)) / 4)}
    elif kind == "change_plan":
        args = {"plan": draw(st.sampled_from(["basic", "advanced", "custom"])),
                "keep_addons": draw(st.booleans())}  # fmt: skip
    elif kind == "addons":
        args = {"pick": draw(st.lists(st.integers(0, 5), max_size=2, unique=True))}
    elif kind == "sla":
        args = {"fault_hours": draw(st.sampled_from([None, "12", "30"])),
                "csat": draw(st.sampled_from([None, "0.85", "0.95"]))}  # fmt: skip
    elif kind == "cancel_now" and draw(st.integers(0, 2)):
        kind, args = "usage", {"orders": 1, "gmv": 0}  # cancel now stays rare
    return Op(at, kind, args)


@dataclass(frozen=True)
class Scenario:
    plan: str
    addons: list[str]
    trial_days: int
    start: datetime
    periods: list[list[Op]]
    """The operations of each period, until the last close."""
    after_end: list[float]
    """When after each period's end the preview is taken, as a share of the grace window."""
    late_orders: list[int]
    """Orders of the ended period that arrive in its grace window, before the preview."""
    tax_rate: Decimal


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    plan = draw(st.sampled_from(["basic", "advanced", "custom"]))
    count = draw(st.integers(1, 3))
    return Scenario(
        plan=plan,
        addons=draw(_addons(plan)),
        trial_days=draw(st.sampled_from([0, 0, 0, 2, 14])),
        start=datetime(
            2026,
            draw(st.integers(1, 12)),
            draw(st.integers(1, 28)),
            draw(st.integers(0, 23)),
            draw(st.sampled_from([0, 17, 30])),
            tzinfo=SHANGHAI,
        ),
        periods=[
            sorted(draw(st.lists(_op(), max_size=4)), key=lambda op: op.at) for _ in range(count)
        ],
        after_end=[draw(st.floats(0.0, 0.95)) for _ in range(count)],
        late_orders=[draw(st.sampled_from([0, 0, 1, 700])) for _ in range(count)],
        tax_rate=draw(st.sampled_from([Decimal(0), Decimal("0.06")])),
    )


# -- running one -----------------------------------------------------------------------------


class Run:
    def __init__(self, client: AsyncClient, operator: Tenant, scenario: Scenario) -> None:
        self.client = client
        self.operator = operator
        self.scenario = scenario
        self.now = scenario.start
        self.events = 0
        self.closes = 0

    async def request(self, method: str, url: str, key: Tenant, body: Any = None) -> Any:
        headers = {**key.headers, "Idempotency-Key": f"property-{uuid.uuid4()}"}
        response = await self.client.request(method, url, json=body, headers=headers)
        assert response.status_code < 500, response.text  # a refused op (4xx) changes nothing
        return response

    async def move(self, to: datetime) -> None:
        if to <= self.now:
            return
        self.now = to
        moved = await self.request(
            "POST", f"/v1/test-clocks/{self.clock}/advance", self.operator,
            {"frozen_time": to.isoformat()},
        )  # fmt: skip
        assert moved.status_code == 200, moved.text

    async def start(self) -> None:
        clock = await self.request(
            "POST", "/v1/test-clocks", self.operator, {"frozen_time": self.now.isoformat()}
        )
        self.clock = clock.json()["id"]
        signed = await self.request(
            "POST", "/v1/signup", self.operator,
            {"merchant": {"name": "属性 Shop", "contact_email": "p@shop.cn"},
             "plan": self.scenario.plan, "addons": self.scenario.addons,
             "trial_days": self.scenario.trial_days, "test_clock_id": self.clock},
        )  # fmt: skip
        assert signed.status_code == 201, signed.text
        body = signed.json()
        self.merchant_id = uuid.UUID(body["merchant"]["id"])
        self.tenant = Tenant(self.merchant_id, body["api_key"]["key"], uuid.UUID(int=0))
        self.sub_id = body["subscription"]["id"]

    async def subscription(self) -> dict[str, Any]:
        response = await self.request("GET", f"/v1/subscriptions/{self.sub_id}", self.tenant)
        body: dict[str, Any] = response.json()
        return body

    async def usage(self, orders: int | str, gmv: int, at: datetime, metric: str = "orders") -> Any:
        self.events += 1
        body: dict[str, Any] = {
            "transaction_id": f"p-{self.events}",
            "metric": metric,
            "occurred_at": at.isoformat(),
            "quantity": orders,
        }
        if gmv:
            body["gmv"] = {"amount_minor": gmv, "currency": "CNY"}
        return await self.request("POST", "/v1/usage/events", self.tenant, body)

    async def apply(self, op: Op, sub: dict[str, Any], reported: set[str]) -> None:
        response = await self._apply(op, sub, reported)
        if response is not None:  # what the examples did, for --hypothesis-show-statistics
            event(f"{op.kind} on {sub['status']} {sub['plan_code']}: {response.status_code}")

    async def _apply(self, op: Op, sub: dict[str, Any], reported: set[str]) -> Any:
        base = f"/v1/subscriptions/{self.sub_id}"
        if op.kind == "usage":
            return await self.usage(
                op.args["orders"], op.args["gmv"], self.now - timedelta(minutes=1)
            )
        if op.kind == "hours":
            return await self.usage(
                op.args["hours"], 0, self.now - timedelta(minutes=1), "support_hours"
            )
        if op.kind == "change_plan":
            plan = op.args["plan"]
            allowed = BASIC_ADDONS if plan == "basic" else COMMON_ADDONS
            addons = [a for a in sub["addons"] if a in allowed] if op.args["keep_addons"] else []
            return await self.request("POST", f"{base}/change-plan", self.tenant,
                                      {"plan": plan, "addons": addons})  # fmt: skip
        if op.kind == "addons":
            pool = BASIC_ADDONS if sub["plan_code"] == "basic" else COMMON_ADDONS
            addons = _valid([pool[i % len(pool)] for i in op.args["pick"]])
            return await self.request("POST", f"{base}/add-ons", self.tenant, {"addons": addons})
        if op.kind == "sla" and sub["current_period_start"] not in reported:
            reported.add(sub["current_period_start"])
            figures: dict[str, Any] = {}
            if op.args["fault_hours"]:
                figures["faults"] = [{"reference": "P-1",
                                      "unresolved_hours": op.args["fault_hours"]}]  # fmt: skip
            if op.args["csat"]:
                figures["csat"] = op.args["csat"]
            return await self.request(
                "POST", "/v1/sla-reports", self.operator,
                {"merchant_id": str(self.merchant_id),
                 "period_start": sub["current_period_start"], **figures},
            )  # fmt: skip
        if op.kind in ("cancel_end", "cancel_now"):
            return await self.request("POST", f"{base}/cancel", self.tenant,
                                      {"at_period_end": op.kind == "cancel_end"})  # fmt: skip
        return None

    async def ended_end(self) -> datetime | None:
        """The end of the latest ended period still without its invoice."""
        value: datetime | None = await db_engine.current().pool.fetchval(
            "SELECT max(sp.period_end) FROM subscription_periods sp"
            " WHERE sp.merchant_id = $1 AND sp.status = 'ended' AND NOT EXISTS ("
            "   SELECT 1 FROM invoices i WHERE i.merchant_id = sp.merchant_id"
            "   AND i.subscription_id = sp.subscription_id AND i.period_start = sp.period_start"
            "   AND i.kind = 'period')",
            self.merchant_id,
        )
        return value

    async def check_one_close(self, index: int) -> None:
        """Take the preview just before the close of the period that just ended, close it,
        and compare."""
        ended = await self.ended_end()
        assert ended is not None, "a period ended"
        await self.move(ended + GRACE * self.scenario.after_end[index])
        if self.scenario.late_orders[index]:
            await self.usage(self.scenario.late_orders[index], 0, ended - timedelta(minutes=2))
        tax = self.scenario.tax_rate
        previewed = await preview.upcoming(
            self.merchant_id, now=self.now, grace=GRACE, tax_rate=tax
        )
        await self.move(ended + GRACE)
        summary = await close.run_pass(
            system_now=datetime.now(UTC), grace=GRACE, tax_rate=tax, merchant_id=self.merchant_id
        )
        made = await preview.read_back(summary.made)
        assert made, "the close made the ended period's invoice"
        event(f"invoices compared per close: {len(made)}")
        event(f"kinds made: {sorted({d.invoice.kind for d in made})}")
        assert [_view(d) for d in made] == [_view(d) for d in previewed[: len(made)]]
        assert all(d.invoice.number and d.invoice.status != "draft" for d in made)
        self.closes += 1

    async def play(self) -> None:
        await self.start()
        reported: set[str] = set()
        for index, ops in enumerate(self.scenario.periods):
            sub = await self.subscription()
            if sub["status"] == "canceled":
                break
            start = datetime.fromisoformat(sub["current_period_start"])
            end = datetime.fromisoformat(sub["current_period_end"])
            for op in ops:
                await self.move(start + (end - start) * op.at)
                sub = await self.subscription()
                if sub["status"] == "canceled":
                    break
                await self.apply(op, sub, reported)
            if (await self.subscription())["status"] != "canceled":
                await self.move(end)
            await self.check_one_close(index)


def _view(drafted: preview.Drafted) -> dict[str, Any]:
    row = drafted.invoice
    return {
        "status": row.status,
        **{name: getattr(row, name) for name in INVOICE_FIELDS},
        "lines": [{name: line[name] for name in LINE_FIELDS} for line in drafted.lines],
    }


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="PREVIEW_PROPERTY_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
async def test_the_preview_taken_just_before_each_close_is_the_invoice_it_makes(
    client: AsyncClient, own_database: Database, scenario: Scenario
) -> None:
    await _clean(own_database)
    secret, key_id = await issue_key(Role.OPERATOR, None)
    run = Run(client, Tenant(uuid.UUID(int=0), secret, key_id), scenario)
    await run.play()
    assert run.closes >= 1
