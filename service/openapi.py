"""The API reference: the OpenAPI 3.1 document and the page that renders it (Swagger UI 5, its
files served by this service from the ``swagger-ui-bundle-v2`` package, never a CDN).

The framework writes the document from the routes; ``finish`` adds what it cannot know: an
example body for every write, and every error answer documented as ``application/problem+json``
with the problem ``type``s it can carry. ``API_VERSION`` is the document's ``info.version``.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
)

from service.errors import PROBLEM_BASE, BillingError

API_VERSION: Final = "2026-12-06"
"""The API's version, as a date (as Stripe names its versions): the day its shape last changed.
Bump it with any change a client could notice; outgoing events carry it."""

STATIC_PREFIX: Final = "/static/swagger"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"

API_DESCRIPTION = """
Billing backend of the Kefu customer-service outsourcing SaaS: plans, subscriptions, metered
usage, invoices, Stripe sync and finance.

**Keys.** Send `Authorization: Bearer <api key>`. A merchant key acts for its own merchant only
(another merchant's ids answer 404). Operator keys (the signup app, finance, support) see every
merchant; support staff hold `support:read` and name the merchant (`?merchant_id=`) on the
reads they make, each one audited.

**Errors.** Every error is an RFC 9457 `application/problem+json` document: a stable `type`
(`https://kefu-billing.dev/problems/<slug>`), a `detail` that says what to do, the offending
`field` where there is one, and the `request_id` to quote.

**Retries.** Usage events are counted once per `transaction_id`; signup takes an
`Idempotency-Key`. Send the same request again after a timeout.
"""

# Problem types the framework layer sends (service.problems), beside the domain's own errors.
_FRAMEWORK_PROBLEMS: Final = {
    400: ("validation-error", "bad-request"),
    401: ("unauthenticated",),
    403: ("forbidden",),
    404: ("not-found",),
    405: ("method-not-allowed",),
    409: ("conflict",),
    413: ("payload-too-large",),
    415: ("unsupported-media-type",),
    422: ("invalid-input",),
    429: ("too-many-requests",),
    500: ("internal-error",),
    503: ("unavailable", "not-ready"),
}

_STATUS_WORDS: Final = {
    400: "The request is not valid (its JSON, a field's type or shape)",
    401: "No API key, or an unknown or revoked one",
    403: "The key may not do this (a missing scope, or an operator-only route)",
    404: "Not found (or not this merchant's)",
    405: "Method not allowed",
    409: "Conflicts with the current state (a transition not allowed, a concurrent change)",
    410: "Gone: what the address named was used or has expired; the `detail` says how to get"
    " a new one",
    413: "The body is too large",
    415: "The body's media type is not accepted",
    422: "Well-formed but refused: the `field` and `detail` say what to change",
    429: "Too many requests: this merchant's rate limit is used up; wait as `Retry-After` says",
    500: "The service failed: quote the `request_id`",
    503: "Unavailable for a moment (too busy, the database restarting, or a service we depend"
    " on not ready yet); nothing was done: send the same request again after `Retry-After`"
    " seconds",
}

_RETRY_AFTER: Final = OpenAPIHeader(
    description="Seconds to wait before sending the request again",
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
)
_RATELIMIT_HEADERS: Final = {
    "Retry-After": _RETRY_AFTER,
    "RateLimit-Policy": OpenAPIHeader(
        description="The merchant's quota on this server"
        ' (draft-ietf-httpapi-ratelimit-headers-10): `"<tier>";q=<requests>;w=<seconds>`',
        schema=Schema(type=OpenAPIType.STRING),
    ),
    "RateLimit": OpenAPIHeader(
        description='What is left of it: `"<tier>";r=<remaining>;t=<seconds until more>`',
        schema=Schema(type=OpenAPIType.STRING),
    ),
}
_HEADERS_BY_STATUS: Final = {429: _RATELIMIT_HEADERS, 503: {"Retry-After": _RETRY_AFTER}}
_NEVER_REFUSED: Final = frozenset({"/healthz"})
"""Operations that never answer 503 (liveness answers while the process runs)."""

_ORDER = {"transaction_id": "order-20260915-000123", "metric": "orders"}

REQUEST_EXAMPLES: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("POST", "/v1/merchants"): {
        "name": "小李卡券店", "contact_email": "owner@xiaoli.cn", "timezone": "Asia/Shanghai",
        "currency": "CNY",
    },
    ("PATCH", "/v1/merchants/me"): {"contact_email": "billing@xiaoli.cn"},
    ("POST", "/v1/merchants/me/payment-setup"): {
        "success_url": "https://app.kefu.example/billing/card-saved",
        "cancel_url": "https://app.kefu.example/billing",
    },
    ("POST", "/v1/api-keys"): {"name": "order pipeline", "scopes": ["usage:write"]},
    ("POST", "/v1/plans/quote"): {
        "orders": 12000, "gmv_minor": 25000000, "addons": {"basic": ["fast_response"]},
    },
    ("POST", "/v1/signup"): {
        "merchant": {"name": "星河游戏充值", "contact_email": "owner@xinghe.cn"},
        "plan": "advanced", "addons": ["tooling_bundle"], "trial_days": 14,
    },
    ("POST", "/v1/subscriptions/{subscription_id}/cancel"): {
        "at_period_end": True, "reason": "moving to an in-house team",
    },
    ("POST", "/v1/subscriptions/{subscription_id}/change-plan"): {
        "plan": "advanced", "addons": [], "when": "now",
    },
    ("POST", "/v1/subscriptions/{subscription_id}/change-quote"): {"plan": "advanced"},
    ("POST", "/v1/subscriptions/{subscription_id}/add-ons"): {
        "addons": ["fast_response", "tooling_bundle"],
    },
    ("PUT", "/v1/merchants/{merchant_id}/contract"): {
        "overrides": {"orders": {"unit_price": "0.15"}, "gmv_fee": {"rate": "0.0025"}},
        "effective_from": "2026-10-01T00:00:00+08:00", "note": "2026 framework contract",
        "payment_terms": {"collection": "send_invoice", "days_until_due": 30},
    },
    ("POST", "/v1/test-clocks"): {"frozen_time": "2026-09-01T00:00:00+08:00", "name": "demo"},
    ("POST", "/v1/test-clocks/{clock_id}/advance"): {"frozen_time": "2026-10-03T00:00:00+08:00"},
    ("POST", "/v1/test-clocks/{clock_id}/merchants"): {
        "merchant_id": "0b3a4c7e-5d1f-4c2a-9e8b-7f6a5d4c3b2a",
    },
    ("POST", "/v1/invoices/{invoice_id}/credit-notes"): {
        "amount_minor": 3000, "reason": "goodwill", "memo": "Outage on 12 September",
    },
    ("POST", "/v1/sla-reports"): {
        "merchant_id": "0b3a4c7e-5d1f-4c2a-9e8b-7f6a5d4c3b2a",
        "period_start": "2026-09-01T00:00:00+08:00", "csat": "0.87",
        "first_response_seconds": "410",
        "faults": [{"reference": "INC-2026-0912", "unresolved_hours": "30.5"}],
    },
    ("POST", "/v1/usage/events"): {
        **_ORDER, "occurred_at": "2026-09-15T10:24:00+08:00", "quantity": 1,
        "gmv": {"amount_minor": 4990, "currency": "CNY"},
    },
    ("POST", "/v1/usage/events/batch"): {
        "events": [
            {**_ORDER, "occurred_at": "2026-09-15T10:24:00+08:00", "quantity": 1,
             "gmv": {"amount_minor": 4990, "currency": "CNY"}},
            {"transaction_id": "consult-20260915-7", "metric": "support_hours",
             "occurred_at": "2026-09-15T16:00:00+08:00", "quantity": "1.5"},
        ],
    },
    ("POST", "/v1/finance/reconciliations"): {"from": "2026-09-01", "to": "2026-09-30"},
    ("POST", "/v1/webhook-endpoints"): {
        "url": "https://platform.example.com/kefu/webhooks",
        "events": ["subscription.suspended", "subscription.resumed", "invoice.finalized",
                   "usage.threshold_reached"],
        "merchant_id": "0b3a4c7e-5d1f-4c2a-9e8b-7f6a5d4c3b2a",
        "description": "stop and resume service with billing",
    },
}  # fmt: skip
"""An example body for every operation that takes one, keyed by method and path template."""


def _error_classes() -> list[type[BillingError]]:
    found: list[type[BillingError]] = []
    pending: list[type[BillingError]] = [BillingError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def problem_types() -> dict[int, list[str]]:
    """Every problem ``type`` the API can answer, by HTTP status."""
    by_status: dict[int, set[str]] = {
        status: {PROBLEM_BASE + slug for slug in slugs}
        for status, slugs in _FRAMEWORK_PROBLEMS.items()
    }
    for cls in _error_classes():
        by_status.setdefault(cls.status, set()).add(cls.type_uri())
    return {status: sorted(types) for status, types in by_status.items()}


PROBLEM_SCHEMA: Final = Schema(
    type=OpenAPIType.OBJECT,
    description="An RFC 9457 problem document.",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, format="uri",  # type: ignore[arg-type]
                       description="Stable identifier of the kind of problem"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="What happened and what to do"),
        "instance": Schema(type=OpenAPIType.STRING, description="The request's path"),
        "request_id": Schema(type=OpenAPIType.STRING, description="Quote it when reporting"),
        "field": Schema(type=OpenAPIType.STRING, description="The offending field, if any"),
        "reason": Schema(type=OpenAPIType.STRING, description="A stable reason code, if any"),
        "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT),
                         description="Validation errors, one per field"),
    },
)  # fmt: skip


def _problem_response(status: int, types: list[str]) -> OpenAPIResponse:
    words = _STATUS_WORDS.get(status, "Error")
    listed = ", ".join(f"`{t.removeprefix(PROBLEM_BASE)}`" for t in types)
    schema = Schema(
        all_of=[
            Reference(ref="#/components/schemas/Problem"),
            Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "type": Schema(type=OpenAPIType.STRING, enum=list(types)),
                    "status": Schema(type=OpenAPIType.INTEGER, const=status),
                },
            ),
        ]
    )
    example = {
        "type": types[0],
        "title": words.split(":")[0].split(" (")[0],
        "status": status,
        "detail": words,
        "instance": "/v1/...",
        "request_id": "3f2c9a7be1d04c55a8f1f0e6b2d4c871",
    }
    return OpenAPIResponse(
        description=f"{words}. Problem types ({PROBLEM_BASE}…): {listed}.",
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=schema, example=example)},
        headers=_HEADERS_BY_STATUS.get(status),  # type: ignore[arg-type]
    )


def _operations(openapi: OpenAPI) -> list[tuple[str, str, Operation]]:
    found = []
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is not None:
                found.append((method.upper(), path, operation))
    return found


def finish(openapi: OpenAPI) -> OpenAPI:
    """Add to the framework's document what only we know (see the module docstring)."""
    types = problem_types()
    components = openapi.components or Components()
    components.schemas = {**(components.schemas or {}), "Problem": PROBLEM_SCHEMA}
    openapi.components = components
    for method, path, operation in _operations(openapi):
        responses = operation.responses if operation.responses is not None else {}
        operation.responses = responses
        # Any request may meet these, whatever the route: a merchant's rate limit (keyed
        # routes), a busy process or a database restarting (all but liveness).
        if "401" in responses:
            responses["429"] = OpenAPIResponse(description="")
        if path not in _NEVER_REFUSED:
            responses["503"] = OpenAPIResponse(description="")
        for status_text in list(operation.responses or {}):
            status = int(status_text) if status_text.isdigit() else 0
            if status >= 400:
                operation.responses[status_text] = _problem_response(  # type: ignore[index]
                    status, types.get(status, [PROBLEM_BASE + "client-error"])
                )
        example = REQUEST_EXAMPLES.get((method, path))
        body = operation.request_body
        if example is not None and body is not None and not isinstance(body, Reference):
            for media in body.content.values():
                media.examples = {"example": Example(summary="A typical request", value=example)}
    return openapi


def openapi_config() -> OpenAPIConfig:
    """The document's header and the reference page (Swagger UI at ``/schema``)."""
    return OpenAPIConfig(
        title="Kefu Billing API",
        version=API_VERSION,
        description=API_DESCRIPTION,
        path="/schema",
        use_handler_docstrings=True,
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/docs"],
                js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
                css_url=f"{STATIC_PREFIX}/swagger-ui.css",
                standalone_preset_js_url=f"{STATIC_PREFIX}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' href='{STATIC_PREFIX}/favicon-32x32.png'>",
            )
        ],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")
            }
        ),
        security=[{"apiKey": []}],
    )
