"""HTTP: signup, subscriptions, contracts and test clocks. Thin: parse, authorize, call, shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody

from service.clock import SYSTEM_CLOCK
from service.db.engine import current as current_database
from service.db.tables import Subscription
from service.errors import Forbidden
from service.idempotency import require_key
from service.payments.schemas import PaymentTermsOut
from service.problems import responses
from service.settings import Settings
from service.subscriptions import actions, clocks, contracts, lifecycle, signup
from service.subscriptions.schemas import (
    AddonsRequest,
    CancelRequest,
    ChangeQuoteOut,
    ContractOut,
    ContractRequest,
    LineOut,
    PlanChangeRequest,
    PreviewInvoiceOut,
    SignupOut,
    SignupRequest,
    SubscriptionOut,
    TestClockAdvance,
    TestClockAttach,
    TestClockCreate,
    TestClockOut,
)
from service.support.reads import SUPPORT_READABLE, record_look
from service.tenancy import merchants
from service.tenancy.auth import operator_only, requires
from service.tenancy.principal import Actor, KeyScope
from service.tenancy.scope import TenantScope, scoped

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=True,
        min_length=1,
        max_length=200,
        description="Required on signup. A new key (a UUID) per signup, the same on every "
        "retry of it: the first answer is returned, nothing is made twice.",
    ),
]


TEST_CLOCKS_OFF = "test clocks are off in production: set BILLING_ALLOW_TEST_CLOCKS=1 to allow them"


def _refuse_test_clocks_unless_allowed(settings: Settings) -> None:
    if not settings.allows_test_clocks:
        raise Forbidden(TEST_CLOCKS_OFF)


async def clocks_allowed_here(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: test clocks move a merchant's billing time; production refuses them unless
    ``BILLING_ALLOW_TEST_CLOCKS=1``."""
    _refuse_test_clocks_unless_allowed(connection.app.state["settings"])


class SignupController(Controller):
    path = "/v1/signup"
    tags = ["signup"]
    guards = [operator_only]

    @post(
        "/",
        summary="Sign a merchant up",
        opt=requires(KeyScope.SIGNUP),
        responses=responses(400, 401, 403, 404, 409, 422),
    )
    async def signup(
        self,
        data: JSONBody[SignupRequest],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SignupOut]:
        """Create a merchant, its first API key (shown once) and its subscription."""
        if data.test_clock_id is not None:
            _refuse_test_clocks_unless_allowed(settings)
        result = await signup.signup(
            data,
            actor=actor,
            idempotency_key=require_key(idempotency_key),
            system_now=SYSTEM_CLOCK.now(),
        )
        headers = {"Idempotent-Replayed": "true"} if result.is_replay else {}
        return Response(result.body, status_code=201, headers=headers)


async def _out(sub: Subscription, *, with_events: bool = False) -> SubscriptionOut:
    return SubscriptionOut.from_row(
        sub,
        events=await lifecycle.events(sub.merchant_id, sub.id) if with_events else None,
        pending=await lifecycle.pending_lines(sub.merchant_id, sub.id),
    )


class SubscriptionController(Controller):
    path = "/v1/subscriptions"
    tags = ["subscriptions"]

    @get(
        "/", summary="List subscriptions", opt=SUPPORT_READABLE, responses=responses(401, 403, 404)
    )
    async def list_subscriptions(
        self,
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
        merchant_id: FromQuery[UUID | None] = None,
    ) -> list[SubscriptionOut]:
        """The merchant's subscriptions (operators: every merchant's, or one's; an operator's
        read of one merchant's is audited)."""
        if tenant.principal.is_operator and merchant_id is not None:
            await record_look(actor, merchant_id, reading="subscriptions")
        query = scoped(
            Subscription.objects().order_by(Subscription.created_at, ascending=False),
            Subscription,
            tenant.narrowed(merchant_id),
        )
        subs = await query.limit(500)
        pending = await lifecycle.pending_lines_of(subs)
        return [SubscriptionOut.from_row(sub, pending=pending[sub.id]) for sub in subs]

    @get(
        "/{subscription_id:uuid}",
        summary="One subscription",
        opt=SUPPORT_READABLE,
        responses=responses(401, 403, 404),
    )
    async def get_subscription(
        self,
        tenant: NamedDependency[TenantScope],
        actor: NamedDependency[Actor],
        subscription_id: FromPath[UUID],
    ) -> SubscriptionOut:
        """One subscription with its event history and the lines waiting for an invoice (an
        operator's read is audited)."""
        sub = await lifecycle.get(tenant.merchant_id, subscription_id)
        if tenant.principal.is_operator:
            await record_look(actor, sub.merchant_id, reading="subscription")
        return await _out(sub, with_events=True)

    @post(
        "/{subscription_id:uuid}/change-plan",
        summary="Change plan",
        status_code=200,
        responses=responses(400, 401, 404, 409, 422),
    )
    async def change_plan(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        data: JSONBody[PlanChangeRequest],
        actor: NamedDependency[Actor],
    ) -> SubscriptionOut:
        """Upgrade now (prorated) or downgrade at period end (``when`` overrides the choice)."""
        sub = await actions.change_plan(tenant.merchant_id, subscription_id, data, actor)
        return await _out(sub)

    @post(
        "/{subscription_id:uuid}/change-quote",
        summary="Quote a plan change",
        status_code=200,
        opt=requires(KeyScope.BILLING_READ),
        responses=responses(400, 401, 404, 409, 422),
    )
    async def change_quote(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        data: JSONBody[PlanChangeRequest],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
    ) -> ChangeQuoteOut:
        """What the change costs now and the invoices the close would make after it, to the
        fen (the change and the close run on the recorded facts, then are rolled back)."""
        quote = await actions.quote(
            tenant.merchant_id,
            subscription_id,
            data,
            tax_rate=settings.tax_rate,
            grace=timedelta(hours=settings.usage_grace_hours),
            actor=actor,
        )
        following = [PreviewInvoiceOut.from_drafted(d) for d in quote.next_invoices]
        return ChangeQuoteOut(
            takes_effect=quote.change.takes_effect,
            effective_at=quote.change.effective_at,
            proration_lines=[LineOut.from_line(line) for line in quote.change.proration_lines],
            proration_net_minor=quote.change.net_minor,
            is_invoiced_immediately=quote.change.is_invoiced_immediately,
            next_invoice_lines=following[0].lines if following else [],
            next_invoice_total_minor=following[0].total_minor if following else 0,
            currency=quote.change.new_plan.currency,
            next_invoices=following,
        )

    @post(
        "/{subscription_id:uuid}/cancel",
        summary="Cancel a subscription",
        status_code=200,
        responses=responses(400, 401, 404, 409),
    )
    async def cancel(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        data: JSONBody[CancelRequest],
        actor: NamedDependency[Actor],
    ) -> SubscriptionOut:
        """Cancel now (unused fee credited) or at period end (``at_period_end``, the default)."""
        sub = await actions.cancel(
            tenant.merchant_id,
            subscription_id,
            at_period_end=data.at_period_end,
            reason=data.reason,
            actor=actor,
        )
        return await _out(sub)

    @post(
        "/{subscription_id:uuid}/pause",
        summary="Pause a subscription",
        status_code=200,
        responses=responses(401, 404, 409),
    )
    async def pause(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        actor: NamedDependency[Actor],
    ) -> SubscriptionOut:
        """Pause an active subscription."""
        return await _out(await actions.pause(tenant.merchant_id, subscription_id, actor))

    @post(
        "/{subscription_id:uuid}/resume",
        summary="Resume a subscription",
        status_code=200,
        responses=responses(401, 404, 409),
    )
    async def resume(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        actor: NamedDependency[Actor],
    ) -> SubscriptionOut:
        """Resume a paused subscription, or take back a cancellation scheduled for period end."""
        return await _out(await actions.resume(tenant.merchant_id, subscription_id, actor))

    @post(
        "/{subscription_id:uuid}/add-ons",
        summary="Set the add-ons",
        status_code=200,
        responses=responses(400, 401, 404, 409, 422),
    )
    async def set_addons(
        self,
        tenant: NamedDependency[TenantScope],
        subscription_id: FromPath[UUID],
        data: JSONBody[AddonsRequest],
        actor: NamedDependency[Actor],
    ) -> SubscriptionOut:
        """Set the add-ons (the full list); the change takes effect now, prorated."""
        sub = await actions.set_addons(tenant.merchant_id, subscription_id, data.addons, actor)
        return await _out(sub)


class ContractController(Controller):
    path = "/v1/merchants/{merchant_id:uuid}/contract"
    tags = ["subscriptions"]
    guards = [operator_only]

    @put("/", summary="Set a custom contract", responses=responses(400, 401, 403, 404, 422))
    async def set_contract(
        self,
        merchant_id: FromPath[UUID],
        data: JSONBody[ContractRequest],
        actor: NamedDependency[Actor],
    ) -> ContractOut:
        """Set a custom-tier merchant's negotiated prices from ``effective_from`` on, and
        optionally its payment terms (a contract paying by bank transfer: every invoice sent,
        due its own number of days after issue)."""
        async with current_database().engine.transaction():
            contract = await contracts.set_terms(
                merchant_id,
                data.overrides,
                effective_from=data.effective_from,
                note=data.note,
                actor=actor,
                payment_terms=data.payment_terms,
            )
        merchant = await merchants.get(merchant_id)
        return ContractOut(
            merchant_id=merchant_id,
            effective_from=contract.effective_from,
            overrides=data.overrides,
            note=contract.note,
            payment_terms=PaymentTermsOut(
                collection=merchant.invoice_collection, days_until_due=merchant.days_until_due
            ),
        )


class TestClockController(Controller):
    path = "/v1/test-clocks"
    tags = ["test clocks"]
    guards = [operator_only, clocks_allowed_here]

    @post("/", summary="Create a test clock", responses=responses(400, 401, 403))
    async def create_clock(
        self, data: JSONBody[TestClockCreate], actor: NamedDependency[Actor]
    ) -> TestClockOut:
        """A clock frozen at ``frozen_time``; attach merchants, then advance it."""
        async with current_database().engine.transaction():
            clock = await clocks.create(data.name, data.frozen_time)
        return TestClockOut.from_row(clock)

    @get("/{clock_id:uuid}", summary="One test clock", responses=responses(401, 403, 404))
    async def get_clock(self, clock_id: FromPath[UUID]) -> TestClockOut:
        """A test clock: the time it reads and the merchants on it."""
        clock = await clocks.get(clock_id)
        return TestClockOut.from_row(clock, await clocks.attached_merchants(clock_id))

    @post(
        "/{clock_id:uuid}/merchants",
        summary="Put a merchant on a test clock",
        status_code=200,
        responses=responses(401, 403, 404, 409),
    )
    async def attach(
        self, clock_id: FromPath[UUID], data: JSONBody[TestClockAttach]
    ) -> TestClockOut:
        """Put a merchant (before it subscribes) on this clock."""
        async with current_database().engine.transaction():
            await clocks.attach(clock_id, data.merchant_id)
        return await self.get_clock.fn(self, clock_id)

    @post(
        "/{clock_id:uuid}/advance",
        summary="Advance a test clock",
        status_code=200,
        responses=responses(400, 401, 403, 404, 422),
    )
    async def advance(
        self,
        clock_id: FromPath[UUID],
        data: JSONBody[TestClockAdvance],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> TestClockOut:
        """Move the clock forward; trial ends, period ends and scheduled changes fire."""
        await actions.advance_clock(
            clock_id, data.frozen_time, actor, max_days=settings.limits.test_clock_max_advance_days
        )
        clock = await clocks.get(clock_id)
        return TestClockOut.from_row(clock, await clocks.attached_merchants(clock_id))
