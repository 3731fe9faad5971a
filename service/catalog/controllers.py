"""HTTP: the published plans, and a side-by-side quote of every plan for some usage."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from plans.catalog import PlanVersion
from plans.charges import UsageAggregate
from plans.compare import compare_plans
from plans.periods import calendar_period_containing, zone
from service.catalog import store
from service.catalog.schemas import PlanOut, PlanVersionsOut, QuoteOut, QuoteRequest
from service.clock import SYSTEM_CLOCK
from service.errors import InvalidInput
from service.problems import responses
from service.settings import Settings

QUOTE_TIMEZONE = "Asia/Shanghai"


def _out(plan: PlanVersion) -> PlanOut:
    return PlanOut(plan=plan, fingerprint=plan.fingerprint)


class PlanController(Controller):
    path = "/v1/plans"
    tags = ["plans"]

    @get("/", summary="List the plans", responses=responses(401))
    async def list_plans(self) -> list[PlanOut]:
        """The plans new subscriptions get (the newest version of each)."""
        catalog = await store.current()
        return [_out(plan) for plan in catalog.latest_plans()]

    @get("/{code:str}", summary="One plan", responses=responses(401, 404))
    async def get_plan(self, code: FromPath[str]) -> PlanVersionsOut:
        """One plan: its current version and every published one."""
        current = await store.plan_version(code)
        catalog = await store.current()
        return PlanVersionsOut(
            code=code,
            current=_out(current),
            versions=[_out(plan) for plan in catalog.versions(code)],
        )

    @post(
        "/quote",
        summary="Compare every plan for a usage",
        status_code=200,
        responses=responses(400, 401, 422),
    )
    async def quote(
        self, data: JSONBody[QuoteRequest], settings: NamedDependency[Settings]
    ) -> QuoteOut:
        """Rate the same month of usage under every plan, cheapest first, with break-even points."""
        at = SYSTEM_CLOCK.now()
        if data.month is not None:
            year, month = (int(part) for part in data.month.split("-"))
            if not 1 <= month <= 12:
                raise InvalidInput(
                    "month must be YYYY-MM with a month from 01 to 12", field="month"
                )
            at = datetime(year, month, 15, tzinfo=zone(QUOTE_TIMEZONE))
        if not Decimal(0) <= data.support_hours <= Decimal(100_000):
            raise InvalidInput("support_hours must be between 0 and 100,000", field="support_hours")
        period = calendar_period_containing(at, QUOTE_TIMEZONE)
        catalog = await store.current()
        unknown = sorted(set(data.addons) - set(catalog.codes()))
        if unknown:
            raise InvalidInput(f"addons name unknown plans: {', '.join(unknown)}", field="addons")
        aggregates = {
            "orders": UsageAggregate(
                count=data.orders, quantity=Decimal(data.orders), gmv_minor=data.gmv_minor
            ),
            "support_hours": UsageAggregate(
                count=1 if data.support_hours else 0, quantity=data.support_hours
            ),
        }
        try:
            comparison = compare_plans(
                catalog,
                period=period,
                aggregates=aggregates,
                addons=data.addons,
                tax_rate=settings.tax_rate,
            )
        except (KeyError, ValueError) as error:
            raise InvalidInput(str(error), field="addons") from None
        return QuoteOut.from_comparison(comparison, period)
