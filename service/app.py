"""``create_app(settings)``: the Litestar application. Wiring only: routes, middleware, handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from service import openapi, runtime, wire
from service.audit.controllers import AuditController
from service.catalog.controllers import PlanController
from service.db import engine as db_engine
from service.edge import RequestEdge
from service.finance.controllers import FinanceController, FinancePageController
from service.health import HealthController
from service.html import FONTS_DIRECTORY, FONTS_PREFIX
from service.invoicing.controllers import (
    CreditBalanceController,
    CreditNoteController,
    InvoiceController,
    SlaReportController,
)
from service.observability import logging as billing_logging
from service.observability.controllers import MetricsController
from service.observability.requests import RequestContextMiddleware
from service.outgoing.controllers import WebhookEndpointController, WebhookEventController
from service.payments import links as payment_links
from service.payments.controllers import (
    MerchantPaymentController,
    PaymentPagesController,
    PaymentSetupLinkController,
)
from service.payments.setup import HostedPages
from service.problems import EXCEPTION_HANDLERS
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.subscriptions.controllers import (
    ContractController,
    SignupController,
    SubscriptionController,
    TestClockController,
)
from service.support.controllers import SupportPageController
from service.tenancy import keys
from service.tenancy.auth import (
    PUBLIC,
    ApiKeyAuthentication,
    provide_actor,
    provide_principal,
    provide_tenant,
)
from service.tenancy.controllers import ApiKeyController, MerchantController
from service.tenancy.principal import Actor, Principal
from service.tenancy.scope import TenantScope
from service.usage import ingest
from service.usage.controllers import UpcomingInvoiceController, UsageController
from webhooks.endpoint import StripeWebhookController
from webhooks.gateway import Gateway
from webhooks.payment_pages import StripeHostedPages
from webhooks.reconcile_source import StripeLedgerSource


def _payment_pages(state: State) -> HostedPages | None:
    pages: HostedPages | None = state.get("payment_pages")
    return pages


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    settings.check_production()
    billing_logging.configure(
        log_format=settings.log_format,
        level=settings.log_level,
        secrets=(settings.stripe.api_key, settings.stripe.webhook_secret),
    )
    keys.configure_cache(settings.key_cache_seconds)
    ingest.configure(properties_max_bytes=settings.limits.properties_max_bytes)
    wire.configure(json_max_depth=settings.limits.json_max_depth)
    payment_links.configure(settings.payments)

    @asynccontextmanager
    async def database_lifespan(_: Litestar) -> AsyncIterator[None]:
        """Connect on start (unless the process already did), close the pool on stop."""
        owns_connection = not db_engine.has_current()
        if owns_connection:
            # The database and its schema are `billing migrate`'s: the app only connects.
            dsn, is_embedded = db_engine.resolve_dsn(settings)
            db_engine.connect(
                dsn,
                is_embedded=is_embedded,
                statement_cache_size=settings.database.statement_cache_size,
            )
        database = db_engine.current()
        # Before the pool: connections the pool later replaces must not be frozen.
        runtime.settle_after_startup()
        await database.start_pool(
            min_size=settings.database.pool_min,
            max_size=settings.database.pool_max,
            acquire_timeout_seconds=settings.database.acquire_timeout_seconds,
            connect_timeout_seconds=settings.database.connect_timeout_seconds,
            connects_now=False,
        )
        try:
            yield
        finally:
            if owns_connection:
                await database.close()

    # Finance reads Stripe's side of a reconciliation through this (None without a Stripe key).
    gateway = Gateway.from_settings(settings.stripe) if settings.stripe.is_configured else None
    stripe_ledger = StripeLedgerSource(gateway) if gateway is not None else None
    # Stripe's Checkout and portal pages for merchants (None without a Stripe key); kept in the
    # app's state, where a test points it at its own Stripe stand-in.
    payment_pages: HostedPages | None = StripeHostedPages(gateway) if gateway is not None else None
    # One per process: requests with a merchant key count in the middleware, payment-setup
    # links (no key) through the `rate_limiter` dependency, against the same buckets.
    rate_limiter = RateLimiter(settings.rate_limits)
    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            MerchantController,
            MerchantPaymentController,
            PaymentSetupLinkController,
            PaymentPagesController,
            ApiKeyController,
            AuditController,
            PlanController,
            SignupController,
            SubscriptionController,
            ContractController,
            TestClockController,
            InvoiceController,
            CreditNoteController,
            CreditBalanceController,
            SlaReportController,
            UsageController,
            UpcomingInvoiceController,
            StripeWebhookController,
            WebhookEndpointController,
            WebhookEventController,
            FinanceController,
            FinancePageController,
            SupportPageController,
            create_static_files_router(
                path=openapi.STATIC_PREFIX,
                directories=[swagger_ui_path],
                opt=PUBLIC,
                include_in_schema=False,
            ),
            # The CJK font of invoice documents, for browsers without one (html.CJK_FONT_FACE).
            create_static_files_router(
                path=FONTS_PREFIX,
                directories=[FONTS_DIRECTORY],
                opt=PUBLIC,
                include_in_schema=False,
                cache_control=CacheControlHeader(max_age=86_400, public=True),
            ),
        ],
        lifespan=[database_lifespan],
        # Plain-ASGI code (the single-event hot path) reads the settings here.
        state=State({"settings": settings, "payment_pages": payment_pages}),
        middleware=[
            RequestContextMiddleware,
            DefineMiddleware(ApiKeyAuthentication, limiter=rate_limiter),
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "tenant": Provide(provide_tenant),
            "actor": Provide(provide_actor),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "stripe_ledger": Provide(lambda: stripe_ledger, use_cache=True, sync_to_thread=False),
            "payment_pages": Provide(_payment_pages, sync_to_thread=False),
            "rate_limiter": Provide(lambda: rate_limiter, use_cache=True, sync_to_thread=False),
        },
        signature_namespace={
            "Principal": Principal,
            "TenantScope": TenantScope,
            "Actor": Actor,
            "Request": Request,
            "Settings": Settings,
            "HostedPages": HostedPages,
            "RateLimiter": RateLimiter,
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        # Every JSON body is decoded by service.wire (limits, messages); query days and
        # instants pass the same range rule.
        request_class=wire.JsonRequest,
        type_decoders=wire.TYPE_DECODERS,
        plugins=[wire.QueryTypesSchema(), wire.InputSchema()],
        openapi_config=openapi.openapi_config(),
        debug=False,
        # Logging is configured once, by service.observability.logging (structlog, JSON in
        # production); Litestar's default would replace the root logger's handler with its own.
        logging_config=None,
    )
    # Built now rather than on the first request, so the document is complete (and the same)
    # for every reader: the JSON, the page, the tests.
    openapi.finish(app.openapi_schema)
    # Outside the router and its exception handler: 404 and 405 answers carry a request id too.
    app.asgi_handler = RequestEdge(
        app.asgi_handler,
        body_timeout_seconds=settings.limits.body_timeout_seconds,
        max_in_flight=settings.capacity.max_in_flight,
    )
    return app
