"""The domain's exceptions: one root, each with its problem ``type`` slug and HTTP status.

Domain code raises these; ``service.problems`` turns them into RFC 9457 responses, once.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://kefu-billing.dev/problems/"


class BillingError(Exception):
    slug: ClassVar[str] = "billing-error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Billing error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug


class InvalidInput(BillingError):
    slug = "invalid-input"
    status = 422
    title = "Invalid input"


class NotFound(BillingError):
    slug = "not-found"
    status = 404
    title = "Not found"


class Conflict(BillingError):
    slug = "conflict"
    status = 409
    title = "Conflict"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "Transition not allowed"


class ConcurrentChange(Conflict):
    slug = "concurrent-change"
    title = "Changed concurrently"


class IdempotencyConflict(Conflict):
    slug = "idempotency-conflict"
    title = "Idempotency key reused with another request"


class CurrencyMismatch(BillingError):
    slug = "currency-mismatch"
    status = 422
    title = "Currency does not match"


class Unauthenticated(BillingError):
    slug = "unauthenticated"
    status = 401
    title = "Missing or invalid API key"


class Forbidden(BillingError):
    slug = "forbidden"
    status = 403
    title = "Not allowed"


class Unavailable(BillingError):
    slug = "unavailable"
    status = 503
    title = "Service unavailable"


class MalformedBody(BillingError):
    """The body is not JSON we can read: malformed, nested too deep, not UTF-8."""

    slug = "invalid-json"
    status = 400
    title = "Body is not valid JSON"


class UnsupportedMediaType(BillingError):
    slug = "unsupported-media-type"
    status = 415
    title = "Unsupported media type"


class PayloadTooLarge(BillingError):
    slug = "payload-too-large"
    status = 413
    title = "Payload too large"


class RequestTimeout(BillingError):
    slug = "request-timeout"
    status = 408
    title = "Request body too slow"


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached (down, restarting) or no pool connection came free in time:
    nothing was done, or what was done is as if the request never came; send it again."""

    slug = "database-unavailable"
    title = "Database unavailable"
    retry_after_seconds: ClassVar[int] = 2


class Overloaded(Unavailable):
    """The process is answering as many requests as it takes at once: refused before any work."""

    slug = "overloaded"
    title = "Too busy"
    retry_after_seconds: ClassVar[int] = 1


class RateLimited(BillingError):
    """The merchant sent more requests than its tier's quota allows: refused before any work."""

    slug = "rate-limited"
    status = 429
    title = "Too many requests"


class UpstreamUnavailable(Unavailable):
    """A service we depend on (Stripe) did not answer; the same request may work later."""

    slug = "upstream-unavailable"
    status = 503
    title = "Upstream service unavailable"
