"""HTTP: finance exports (streamed downloads) and figures. Operators with ``finance:read``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from plans.money import minor_to_major
from service.clock import SYSTEM_CLOCK
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from service.finance import exports, page, reconcile, revenue, session
from service.finance.schemas import (
    MonthSummaryOut,
    MrrOut,
    ReconciliationCreate,
    TierMrrOut,
)
from service.html import html_response, require_same_origin
from service.problems import responses
from service.tenancy import keys
from service.tenancy.auth import PUBLIC, operator_only, requires
from service.tenancy.principal import KeyScope, Principal
from service.wire import MONTH_HINT, MONTH_REGEX, Day

Timezone = Annotated[str, QueryParameter(name="timezone", max_length=64)]
IncludeTest = Annotated[
    bool,
    QueryParameter(
        name="include_test",
        description="Count test merchants too (those on a test clock: `is_test`); left out "
        "by default.",
    ),
]
MonthParam = Annotated[
    str, QueryParameter(name="month", pattern=MONTH_REGEX, description=MONTH_HINT)
]


def _zone_checked(timezone: str) -> str:
    try:
        from plans.periods import zone

        zone(timezone)
    except ValueError as error:
        raise InvalidInput(str(error), field="timezone") from None
    return timezone


async def _export_response(
    kind: str,
    first_day: date,
    last_day: date,
    export_format: str,
    merchant_id: UUID | None,
    timezone: str,
    *,
    has_bom: bool,
    includes_test: bool,
) -> Stream:
    try:
        export_kind = exports.ExportKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in exports.ExportKind)
        raise NotFound(f"no export called {kind!r} (there are: {known})") from None
    if last_day < first_day:
        raise InvalidInput("'to' is before 'from'", field="to")
    request = exports.ExportRequest(
        kind=export_kind,
        first_day=first_day,
        last_day=last_day,
        timezone=_zone_checked(timezone),
        merchant_id=merchant_id,
        format=exports.ExportFormat(export_format),
        has_bom=has_bom,
        includes_test=includes_test,
    )
    return Stream(
        await exports.primed_stream(request),
        media_type=request.media_type,
        headers={"Content-Disposition": f'attachment; filename="{request.filename}"'},
    )


class FinanceController(Controller):
    path = "/v1/finance"
    tags = ["finance"]
    guards = [operator_only]
    opt = requires(KeyScope.FINANCE_READ)

    @get(
        "/exports/{kind:str}",
        summary="Download a finance export",
        responses=responses(400, 401, 403, 404),
    )
    async def export(
        self,
        kind: FromPath[str],
        first_day: Annotated[Day, QueryParameter(name="from")],
        last_day: Annotated[Day, QueryParameter(name="to")],
        export_format: Annotated[
            str, QueryParameter(name="format", pattern="^(csv|parquet|xlsx)$")
        ] = "csv",
        merchant_id: Annotated[UUID | None, QueryParameter(name="merchant_id")] = None,
        timezone: Timezone = "Asia/Shanghai",
        bom: Annotated[bool, QueryParameter(name="bom")] = False,
        include_test: IncludeTest = False,
    ) -> Stream:
        """A finance export as a streamed download: ``kind`` is one of invoices,
        invoice_lines, payments, refunds, usage, revenue, mrr, reconciliation,
        credit_balance; ``from`` and ``to`` are inclusive accounting dates in ``timezone``;
        ``bom=true`` adds the byte-order mark Excel needs; test merchants' rows only with
        ``include_test=true``."""
        return await _export_response(
            kind,
            first_day,
            last_day,
            export_format,
            merchant_id,
            timezone,
            has_bom=bom,
            includes_test=include_test,
        )

    @post(
        "/reconciliations",
        summary="Reconcile with Stripe",
        status_code=201,
        responses=responses(400, 401, 403, 409),
    )
    async def reconcile_now(
        self, data: JSONBody[ReconciliationCreate], stripe_ledger: NamedDependency[Any]
    ) -> dict[str, Any]:
        """Reconcile this ledger against Stripe for a range of accounting dates (optionally one
        merchant); the run is stored and returned: per-currency summary and every mismatch
        with both sides."""
        if stripe_ledger is None:
            raise Conflict("no Stripe key is configured: there is no Stripe side to read")
        first_day, last_day, merchant = data.first_day, data.last_day, data.merchant_id
        if last_day < first_day:
            raise InvalidInput("'to' is before 'from'", field="to")
        result = await reconcile.run(
            stripe_ledger,
            first_day=first_day,
            last_day=last_day,
            timezone=_zone_checked(data.timezone),
            merchant_ids=[merchant] if merchant else None,
        )
        return await reconcile.store(result, now=SYSTEM_CLOCK.now())

    @get(
        "/reconciliations/latest",
        summary="The latest reconciliation run",
        responses=responses(401, 403, 404),
    )
    async def latest_reconciliation(self) -> dict[str, Any]:
        """The most recent stored reconciliation run."""
        found = await reconcile.stored()
        if found is None:
            raise NotFound("no reconciliation has been run yet")
        return found

    @get(
        "/reconciliations/{reconciliation_id:uuid}",
        summary="One reconciliation run",
        responses=responses(401, 403, 404),
    )
    async def get_reconciliation(self, reconciliation_id: FromPath[UUID]) -> dict[str, Any]:
        """A stored reconciliation run."""
        found = await reconcile.stored(reconciliation_id)
        if found is None:
            raise NotFound(f"reconciliation {reconciliation_id} not found")
        return found

    @get("/mrr", summary="MRR by tier on a date", responses=responses(400, 401, 403))
    async def mrr(
        self,
        on: Annotated[Day, QueryParameter(name="on")],
        timezone: Timezone = "Asia/Shanghai",
        merchant_id: Annotated[UUID | None, QueryParameter(name="merchant_id")] = None,
        include_test: IncludeTest = False,
    ) -> MrrOut:
        """MRR per tier as ``on`` ends in ``timezone`` (active and past-due subscriptions;
        test merchants only with ``include_test=true``)."""
        tiers = await revenue.mrr_on(
            on, _zone_checked(timezone), merchant_id, includes_test=include_test
        )
        return MrrOut(
            on=on.isoformat(),
            timezone=timezone,
            tiers=[TierMrrOut.of(t.tier, t.currency, t.mrr_minor, t.subscriptions) for t in tiers],
        )

    @get("/summary", summary="Billed and collected in a month", responses=responses(400, 401, 403))
    async def summary(
        self,
        month: MonthParam,
        timezone: Timezone = "Asia/Shanghai",
        include_test: IncludeTest = False,
    ) -> list[MonthSummaryOut]:
        """Per currency: billed (invoices finalized in the month), collected (payments
        received in it) and the month's invoices by status (test merchants only with
        ``include_test=true``)."""
        year, number = (int(part) for part in month.split("-"))
        rows = await revenue.month_summary(
            year, number, _zone_checked(timezone), includes_test=include_test
        )
        return [
            MonthSummaryOut(
                month=row.month,
                currency=row.currency,
                billed_minor=row.billed_minor,
                billed=format(minor_to_major(row.billed_minor, row.currency), "f"),
                collected_minor=row.collected_minor,
                collected=format(minor_to_major(row.collected_minor, row.currency), "f"),
                invoice_status_counts=row.invoice_status_counts,
            )
            for row in rows
        ]


# -- the finance page --------------------------------------------------------------------------

FormatParam = Annotated[str, QueryParameter(name="format", pattern="^(csv|parquet|xlsx)$")]


FINANCE_REFUSAL = "the finance page is for operators with the finance:read scope"


async def viewer(
    request: ASGIConnection[Any, Any, Any, Any],
    *,
    may_see: Callable[[Principal | None], bool] = session.may_read_finance,
    refusal: str = FINANCE_REFUSAL,
) -> Principal | None:
    """Who is looking: a bearer key, else the session cookie. A key that ``may_see`` refuses
    (by default: not an operator's with ``finance:read``) is refused outright; no credentials
    at all is ``None`` (log in). The support view asks with its own ``may_see``."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        principal = await keys.authenticate(secret.strip())
        if principal is None:
            raise Unauthenticated("this API key is unknown or revoked")
        if not may_see(principal):
            raise Forbidden(refusal)
        return principal
    found = await session.principal_of(
        request.cookies.get(session.COOKIE_NAME), now=SYSTEM_CLOCK.now()
    )
    if found is not None and not may_see(found):
        raise Forbidden(refusal)
    return found


async def _session_required(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    """Guard of the page's downloads: before any parameter is read, a merchant key is refused
    (403) and no session at all is 401."""
    if await viewer(connection) is None:
        raise Unauthenticated("log in at /finance/login first")


def html_page(content: str, status_code: int = 200) -> Response[str]:
    return html_response(content, status_code)


def _month_bounds(month: str | None) -> tuple[int, int]:
    if month is None:
        now = SYSTEM_CLOCK.now()
        return now.year, now.month
    year, number = (int(part) for part in month.split("-"))
    return year, number


class FinancePageController(Controller):
    """``/finance``: the page, its login and its downloads. Not in the API schema; it does its
    own authentication (bearer key or session cookie)."""

    path = "/finance"
    opt = PUBLIC
    include_in_schema = False

    @get("/")
    async def page(
        self,
        request: Request[Any, Any, Any],
        month: Annotated[
            str | None, QueryParameter(name="month", pattern=MONTH_REGEX, description=MONTH_HINT)
        ] = None,
        timezone: Timezone = "Asia/Shanghai",
        include_test: IncludeTest = False,
    ) -> Response[str]:
        if await viewer(request) is None:
            return Response("", status_code=303, headers={"Location": "/finance/login"})
        year, number = _month_bounds(month)
        timezone = _zone_checked(timezone)
        first_month = (year - 1, number + 1) if number < 12 else (year, 1)
        series = await revenue.mrr_by_month(
            date(*first_month, 1), date(year, number, 1), timezone, includes_test=include_test
        )
        last_day = date(year + number // 12, number % 12 + 1, 1) - timedelta(days=1)
        figures = page.PageFigures(
            month=f"{year:04d}-{number:02d}",
            timezone=timezone,
            first_day=date(year, number, 1).isoformat(),
            last_day=last_day.isoformat(),
            series=series,
            summaries=await revenue.month_summary(
                year, number, timezone, includes_test=include_test
            ),
            reconciliation=await reconcile.stored(),
            includes_test=include_test,
        )
        return html_page(page.render(figures))

    @get("/login")
    async def login_form(self) -> Response[str]:
        return html_page(page.render_login())

    @post("/login", status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        require_same_origin(request)
        opened = await session.open_session(data.get("api_key", "").strip(), now=SYSTEM_CLOCK.now())
        if opened is None:
            return html_page(
                page.render_login(
                    "That key is not an operator key with the finance:read or support:read scope."
                ),
                status_code=403,
            )
        principal, cookie = opened
        landing = "/finance" if session.may_read_finance(principal) else "/finance/support"
        return Response(
            "",
            status_code=303,
            headers={"Location": landing, "Cache-Control": "no-store"},
            cookies=[
                Cookie(
                    key=session.COOKIE_NAME,
                    value=cookie,
                    path="/",  # invoice documents under /v1/invoices open with it too
                    max_age=int(session.LIFETIME.total_seconds()),
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                )
            ],
        )

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[str]:
        require_same_origin(request)
        await session.close_session(
            request.cookies.get(session.COOKIE_NAME), now=SYSTEM_CLOCK.now()
        )
        return Response(
            "",
            status_code=303,
            headers={"Location": "/finance/login"},
            cookies=[
                # "/" since documents open with the session; "/finance" as sessions had it once
                Cookie(key=session.COOKIE_NAME, value="", path="/", max_age=0),
                Cookie(key=session.COOKIE_NAME, value="", path="/finance", max_age=0),
            ],
        )

    @get("/exports/{kind:str}", guards=[_session_required])
    async def download(
        self,
        kind: FromPath[str],
        first_day: Annotated[Day, QueryParameter(name="from")],
        last_day: Annotated[Day, QueryParameter(name="to")],
        export_format: FormatParam = "csv",
        merchant_id: Annotated[UUID | None, QueryParameter(name="merchant_id")] = None,
        timezone: Timezone = "Asia/Shanghai",
        bom: Annotated[bool, QueryParameter(name="bom")] = False,
        include_test: IncludeTest = False,
    ) -> Stream:
        """The page's download links: the same exports, authorized by the session."""
        return await _export_response(
            kind,
            first_day,
            last_day,
            export_format,
            merchant_id,
            timezone,
            has_bom=bom,
            includes_test=include_test,
        )
