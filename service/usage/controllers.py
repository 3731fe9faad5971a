"""HTTP: the metered billing API (usage events, voids, summary) and the upcoming invoice. Thin."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from service.problems import responses
from service.settings import Settings
from service.subscriptions import clocks
from service.subscriptions.schemas import PreviewInvoiceOut
from service.support.reads import SUPPORT_READABLE, merchant_to_read
from service.tenancy.auth import requires
from service.tenancy.principal import Actor, KeyScope, Principal
from service.tenancy.scope import TenantScope
from service.usage import ingest, single, summary, upcoming, voids
from service.usage.schemas import (
    MAX_BATCH,
    BatchOut,
    EventOut,
    UpcomingInvoiceOut,
    UsageBatchIn,
    UsageEventIn,
    UsageSummaryOut,
    VoidOut,
)
from service.wire import MONTH_HINT, MONTH_REGEX, PATTERN_HINTS

_IDEMPOTENCY = """
**`transaction_id` is the order's own id** in your system, and it MUST be the same on every
retry of that order. The service counts each `transaction_id` once per merchant, however often
and however concurrently it arrives. A client that makes a new id per retry (a random UUID per
request, say) bills the merchant twice.
"""

_SINGLE = f"""
Record one usage event.

{_IDEMPOTENCY}
Answers: **201** accepted (committed before this answer; `period_start` names the billing period
it counts in); **200** duplicate (this id was already recorded with the same content: nothing
counted again); **409** conflict (this id was recorded with different content: nothing counted;
void the first to correct it); **422** rejected, as `application/problem+json` with the `field`
and a stable `reason`: `invalid_transaction_id`, `unknown_metric`, `invalid_quantity`,
`fractional_quantity`, `too_precise`, `quantity_too_large`, `occurred_at_without_timezone`,
`occurred_in_future`, `before_subscription_start`, `after_subscription_end`,
`outside_subscription`, `no_subscription`, `gmv_not_allowed`, `currency_mismatch`,
`invalid_gmv`.

`occurred_at` decides the period: an event for an ended period (late usage) still counts in that
period; once that period is invoiced it appears on the next invoice as an adjustment line.
"""

_BATCH = f"""
Record up to {MAX_BATCH:,} usage events at once.

{_IDEMPOTENCY}
The answer is **200** whenever the body is well-formed, even when some events are rejected: read
`results`, one per event in request order (`index`), each `accepted`, `duplicate`, `conflict` or
`rejected` (with `reason`, `field` and `detail`, as for a single event). The good events are
stored (committed before the answer) even when others are rejected. **Re-sending a whole batch
whose ids are already stored succeeds, with every event marked `duplicate`**: after a timeout or
a crash, simply send the same batch again. A body that is not valid JSON of this shape (a
missing field, a wrong type, more than {MAX_BATCH:,} events) is a 400 and stores nothing.
"""

_VOID = """
Take an event back: it is marked voided and subtracted from its period's usage, once. Voiding
it again answers 200 with `was_already_voided: true` and changes nothing (retries are safe).
The id stays taken: sending the event again is a duplicate, not a new count. If the period was
already invoiced, the next invoice carries the negative adjustment. Percent-encode the id in
the path.
"""

_SUMMARY = """
Usage per metric (events counted, summed quantity, summed GMV in minor units) for `current` (the
billing period open now) or `YYYY-MM` (the billing periods that start in that calendar month of
the subscription's timezone). Read from totals kept up to date at ingest, never by scanning
events. Voided events are not counted.
"""


def _merchant_of(request: Request[Any, Any, Any]) -> UUID:
    """The calling merchant, from its key. The hot paths take it from the request rather than
    from the ``tenant`` dependency: a second dependency makes Litestar resolve them in a task
    group, which costs more than the rest of a single-event request's handler."""
    return TenantScope(request.user).require_merchant()


SUMMARY_PERIOD_REGEX = f"^(current|{MONTH_REGEX[1:-1]})$"
PATTERN_HINTS[SUMMARY_PERIOD_REGEX] = f"`current` or {MONTH_HINT}"

Period = Annotated[
    str,
    QueryParameter(
        name="period",
        pattern=SUMMARY_PERIOD_REGEX,
        description="`current` or a calendar month `YYYY-MM`",
    ),
]


SupportMerchant = Annotated[
    UUID | None,
    QueryParameter(
        name="merchant_id",
        description="Operators with `support:read`: the merchant to read (each such read is"
        " audited). Merchant keys leave it out (their own merchant).",
    ),
]


class UsageController(Controller):
    path = "/v1/usage"
    tags = ["usage"]

    @post(
        "/events",
        summary="Record a usage event",
        opt=requires(KeyScope.USAGE_WRITE),
        middleware=[single.SingleEventHotPath],
        status_code=201,
        description=_SINGLE,
        responses={
            200: ResponseSpec(
                data_container=EventOut,
                description="Duplicate: already recorded with the same content, not counted again",
            ),
            **responses(400, 401, 403, 409, 422),
        },
    )
    async def record_event(
        self,
        data: JSONBody[UsageEventIn],
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
    ) -> Response[EventOut]:
        """Record one usage event (201 accepted, 200 duplicate, 409 conflict, 422 rejected)."""
        answer = await single.record(
            _merchant_of(request), data, future_skew_seconds=settings.usage_future_skew_seconds
        )
        return Response(answer, status_code=single.status_of(answer))

    @post(
        "/events/batch",
        summary="Record usage events in a batch",
        opt=requires(KeyScope.USAGE_WRITE),
        status_code=200,
        description=_BATCH,
        responses=responses(400, 401, 403, 409, 413),
    )
    async def record_batch(
        self,
        data: JSONBody[UsageBatchIn],
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
    ) -> BatchOut:
        """Record up to 10,000 usage events; 200 with a result per event."""
        result = await ingest.ingest(
            _merchant_of(request),
            data.events,
            future_skew_seconds=settings.usage_future_skew_seconds,
        )
        counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
        for outcome in result.outcomes:
            counts[outcome.status] += 1
        return BatchOut(
            accepted=counts["accepted"],
            duplicates=counts["duplicate"],
            conflicts=counts["conflict"],
            rejected=counts["rejected"],
            results=result.outcomes,
        )

    @post(
        "/events/{transaction_id:str}/void",
        summary="Void a usage event",
        opt=requires(KeyScope.USAGE_WRITE),
        status_code=200,
        description=_VOID,
        responses=responses(401, 403, 404),
    )
    async def void_event(
        self, transaction_id: FromPath[str], tenant: NamedDependency[TenantScope]
    ) -> VoidOut:
        """Void a recorded event: subtracted from its period once; voiding again is a no-op."""
        merchant_id = tenant.require_merchant()
        now = (await clocks.clock_for_merchant(merchant_id)).now()
        voided = await voids.void(merchant_id, transaction_id, now=now)
        return VoidOut(
            transaction_id=voided.transaction_id,
            voided_at=voided.voided_at,
            was_already_voided=voided.was_already_voided,
        )

    @get(
        "/summary",
        summary="Usage so far",
        opt=SUPPORT_READABLE,
        description=_SUMMARY,
        responses=responses(400, 401, 403, 404, 422),
    )
    async def usage_summary(
        self,
        principal: NamedDependency[Principal],
        actor: NamedDependency[Actor],
        period: Period = "current",
        merchant_id: SupportMerchant = None,
    ) -> UsageSummaryOut:
        """Usage per metric for the current period or a month."""
        merchant = await merchant_to_read(
            principal, merchant_id, actor=actor, reading="usage_summary"
        )
        return UsageSummaryOut.from_summary(await summary.summarize(merchant, period))


class UpcomingInvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["invoices"]

    @get(
        "/upcoming",
        summary="The upcoming invoice",
        opt=SUPPORT_READABLE,
        responses=responses(401, 403, 404, 409, 422),
    )
    async def upcoming_invoice(
        self,
        principal: NamedDependency[Principal],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
        merchant_id: SupportMerchant = None,
    ) -> UpcomingInvoiceOut:
        """The next invoice the period close will make, exactly as it will make it (the close
        runs on the recorded usage, SLA reports, trial, waiting lines and credit balance, then
        is rolled back), and in ``invoices`` every invoice it will make up to and including
        the one of the period open now, in order. 409 while a worker holds the merchant's
        rows: retry."""
        merchant = await merchant_to_read(
            principal, merchant_id, actor=actor, reading="upcoming_invoice"
        )
        result = await upcoming.upcoming(
            merchant,
            tax_rate=settings.tax_rate,
            grace=timedelta(hours=settings.usage_grace_hours),
        )
        invoices = [PreviewInvoiceOut.from_drafted(drafted) for drafted in result.invoices]
        first = invoices[0]
        return UpcomingInvoiceOut(
            **{name: getattr(first, name) for name in PreviewInvoiceOut.__struct_fields__},
            timezone=result.timezone,
            invoices=invoices,
        )
