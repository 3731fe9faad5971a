"""Settings: one frozen dataclass tree read from the environment, once.

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str | None = None
    """``DATABASE_URL``: any PostgreSQL 14+. ``None`` starts the embedded server."""
    data_dir: Path = PROJECT_ROOT / ".data"
    """Where the embedded PostgreSQL keeps its files (``BILLING_DATA_DIR``)."""
    database: str = "billing"
    """Database created inside the embedded server (``BILLING_DB_NAME``)."""
    pool_min: int = 2
    pool_max: int = 20
    statement_cache_size: int | None = None
    """``BILLING_DB_STATEMENT_CACHE_SIZE``: prepared statements asyncpg keeps per connection
    (unset: asyncpg's default, 100). Set 0 behind PgBouncer in transaction pooling."""
    wait_seconds: float = 30.0
    """``BILLING_DB_WAIT_SECONDS``: how long ``serve``, ``worker``, ``migrate`` and
    ``partitions`` wait for PostgreSQL to accept connections when they start."""
    allows_embedded_in_production: bool = False
    """``BILLING_ALLOW_EMBEDDED_DATABASE=1``: production may run on the embedded server."""
    acquire_timeout_seconds: float = 5.0
    """``BILLING_DB_ACQUIRE_TIMEOUT_SECONDS``: the longest a request (or a worker's unit of
    work) waits for a pool connection, connecting included; after it the request answers 503
    with ``Retry-After`` instead of waiting on (PostgreSQL down, or every connection busy)."""
    connect_timeout_seconds: float = 5.0
    """``BILLING_DB_CONNECT_TIMEOUT_SECONDS``: the longest one new connection may take to open
    (asyncpg's own default is 60 s: a host that drops packets would hold requests that long)."""
    citus_shard_count: int = 32
    """``BILLING_CITUS_SHARD_COUNT``: on a Citus coordinator, how many shards ``billing migrate``
    gives the distributed tables when it first distributes them (Citus' own default, 32;
    see ``infra/README.md``). Ignored on plain PostgreSQL."""

    @property
    def is_embedded(self) -> bool:
        return self.url is None


@dataclass(frozen=True, slots=True)
class StripeSettings:
    api_key: str | None = None
    webhook_secret: str | None = None
    api_base: str | None = None
    """Point the SDK somewhere else than api.stripe.com (the local stand-in)."""
    webhook_tolerance_seconds: int = 300
    timeout_seconds: float = 15.0
    """``STRIPE_TIMEOUT_SECONDS``: the longest one Stripe request may take (the SDK's own
    default is 80 s). A request cut short is retried later with the same idempotency key."""
    outbox_lease_seconds: float = 300.0
    """``STRIPE_OUTBOX_LEASE_SECONDS``: how long a claimed outbox row stays with the worker
    that claimed it. A worker that dies mid-push leaves the row ``in_flight``; once the lease
    has run out another worker sends it again (the same idempotency keys make that safe)."""

    @property
    def is_configured(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """Where merchants add and manage a way to pay (``service.payments``): the addresses of
    our pages that Stripe's hosted pages send them back to."""

    public_url: str = "http://127.0.0.1:8000"
    """``BILLING_PUBLIC_URL``: this service's address as a merchant's browser reaches it; the
    payment-setup links start with it. Default: ``http://BILLING_HOST:BILLING_PORT``."""
    setup_success_url: str = ""
    """``BILLING_PAYMENT_SETUP_SUCCESS_URL``: where Checkout sends the merchant after it saved
    a way to pay. Default: our own page, ``<public url>/pay/setup/complete``."""
    setup_cancel_url: str = ""
    """``BILLING_PAYMENT_SETUP_CANCEL_URL``: where Checkout sends a merchant who gave up.
    Default: ``<public url>/pay/setup/canceled``."""
    portal_return_url: str = ""
    """``BILLING_PORTAL_RETURN_URL``: the customer portal's way back. Default:
    ``<public url>/pay/portal/return``."""
    link_days: int = 30
    """``BILLING_PAYMENT_SETUP_LINK_DAYS``: how long a payment-setup link works."""
    is_public_url_set: bool = False
    """``BILLING_PUBLIC_URL`` was given (else it follows where ``billing serve`` listens)."""

    def __post_init__(self) -> None:
        base = self.public_url.rstrip("/")
        object.__setattr__(self, "public_url", base)
        defaults = {
            "setup_success_url": f"{base}/pay/setup/complete",
            "setup_cancel_url": f"{base}/pay/setup/canceled",
            "portal_return_url": f"{base}/pay/portal/return",
        }
        for name, default in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long the worker keeps what only grows (0 keeps it forever). See the README's
    Operations section."""

    idempotency_days: int = 7
    """``BILLING_RETAIN_IDEMPOTENCY_DAYS``: stored answers to ``Idempotency-Key`` requests; a
    client retrying later than this runs the request afresh (Stripe keeps its keys 24 h)."""
    stripe_events_days: int = 90
    """``BILLING_RETAIN_STRIPE_EVENTS_DAYS``: processed Stripe webhook events (raw payload and
    all) after processing; pending and parked events are kept."""
    outbox_sent_days: int = 30
    """``BILLING_RETAIN_OUTBOX_SENT_DAYS``: outbox rows after they were sent to Stripe."""
    reconciliations_days: int = 730
    """``BILLING_RETAIN_RECONCILIATIONS_DAYS``: stored reconciliation runs; the latest run is
    always kept."""
    audit_months: int = 84
    """``BILLING_RETAIN_AUDIT_MONTHS``: audit entries, dropped a whole month (partition) at a
    time once the month ended this many months ago."""
    webhook_events_days: int = 30
    """``BILLING_RETAIN_WEBHOOK_EVENTS_DAYS``: outgoing events (with their deliveries and
    delivery logs) this long after they were recorded, once no delivery of them is waiting."""
    payment_links_days: int = 30
    """``BILLING_RETAIN_PAYMENT_LINKS_DAYS``: payment-setup links this long after they
    expired (they no longer open anything; an old address then answers 404, not 410)."""
    batch_rows: int = 1000
    """``BILLING_RETENTION_BATCH_ROWS``: rows deleted per statement (and transaction)."""


@dataclass(frozen=True, slots=True)
class OutgoingWebhookSettings:
    """Events we send to the platform's webhook endpoints (``service.outgoing``)."""

    allows_private_addresses: bool = False
    """``BILLING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1``: endpoints may resolve to loopback,
    private, link-local ... addresses (development and tests, e.g. a receiver on 127.0.0.1)."""
    requires_https: bool = False
    """Production mode: endpoint URLs must be ``https``."""
    timeout_seconds: float = 10.0
    """``BILLING_WEBHOOK_TIMEOUT_SECONDS``: the longest one delivery may take, connecting and
    the answer included."""
    retry_hours: int = 72
    """``BILLING_WEBHOOK_RETRY_HOURS``: a delivery is retried with backoff this long, then
    given up (the next one of its endpoint and merchant goes)."""
    disable_after_failures: int = 20
    """``BILLING_WEBHOOK_DISABLE_AFTER_FAILURES``: consecutive failed attempts after which an
    endpoint is disabled (an operator re-enables it)."""
    usage_watch_seconds: float = 60.0
    """``BILLING_USAGE_WATCH_SECONDS``: how often the worker looks at usage for thresholds and
    cheaper plans (and at trials about to end)."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What a client may send (``BILLING_*`` variables, and ``STRIPE_WEBHOOK_MAX_BODY_BYTES``
    for Stripe's webhooks; the README lists them)."""

    json_max_depth: int = 32
    """Objects and arrays nested deeper than this in a JSON body are a 400."""
    properties_max_bytes: int = 16 * 1024
    """A usage event's ``properties``, encoded as JSON; larger is rejected per event."""
    body_timeout_seconds: float = 30.0
    """A request body must have arrived this long after the request began (408 otherwise)."""
    webhook_max_body_bytes: int = 1024 * 1024
    """A Stripe webhook body larger than this is a 413 (Stripe's events are a few KB)."""
    test_clock_max_advance_days: int | None = None
    """How far one test-clock advance may move (None: no cap; the fuzz gate sets a small one)."""


@dataclass(frozen=True, slots=True)
class SellerSettings:
    """Who issues the invoices: printed on every invoice document (HTML and PDF)."""

    legal_name: str = "Kefu Billing"
    """``BILLING_SELLER_LEGAL_NAME``: the registered name of the company that bills."""
    address: tuple[str, ...] = ()
    """``BILLING_SELLER_ADDRESS``: its address, lines separated by ``|`` or newlines."""
    tax_id: str = ""
    """``BILLING_SELLER_TAX_ID``: its tax number (统一社会信用代码 / VAT id)."""
    email: str = ""
    """``BILLING_SELLER_EMAIL``: where merchants write about an invoice."""

    @property
    def is_complete(self) -> bool:
        """A legal name of its own, an address and a tax id: what a valid invoice names."""
        return bool(self.address and self.tax_id and self.legal_name != "Kefu Billing")


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """How much each process takes on, and how it lets go (the README's Capacity section)."""

    max_in_flight: int = 128
    """``BILLING_MAX_IN_FLIGHT``: requests one API process answers at once; one more is refused
    at once with a 503 and ``Retry-After`` (health, readiness and metrics are never refused)."""
    shutdown_grace_seconds: float = 25.0
    """``BILLING_SHUTDOWN_GRACE_SECONDS``: on SIGTERM an API process stops taking connections
    and gives the requests in flight this long to finish."""
    worker_backoff_max_seconds: float = 10.0
    """``BILLING_WORKER_BACKOFF_MAX_SECONDS``: while the database is unreachable a worker waits
    longer after each failed pass (its interval, doubled each time) up to this."""


TIERS = ("basic", "advanced", "custom")
"""The service tiers a plan belongs to (``plan_versions.tier``); rate limits are set per tier."""


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Requests a merchant's keys may make, per tier (``service.ratelimit``). Each API process
    enforces its share: the tier's quota ÷ ``api_processes`` per window."""

    basic: int = 500
    """``BILLING_RATE_LIMIT_BASIC``: requests per window for a merchant on a basic plan (0: no
    limit). The same for ``_ADVANCED`` and ``_CUSTOM``."""
    advanced: int = 2000
    custom: int = 5000
    window_seconds: int = 10
    """``BILLING_RATE_LIMIT_WINDOW_SECONDS``: the window the quotas are counted over; the quota
    refills continuously, so a merchant may burst to its quota, then quota ÷ window a second."""
    api_processes: int = 1
    """``BILLING_API_PROCESSES``: how many API processes share the traffic (pods × ``serve
    --workers``); each enforces quota ÷ this, so the deployment as a whole allows the quota."""

    def quota(self, tier: str) -> int:
        """The quota one process enforces for ``tier`` per window (0: none); an unknown tier
        is held to basic's."""
        total = getattr(self, tier) if tier in TIERS else self.basic
        if total == 0:
            return 0
        return max(1, -(-total // self.api_processes))


@dataclass(frozen=True, slots=True)
class Settings:
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "console"
    log_level: str = "INFO"
    key_cache_seconds: float = 3.0
    """How long a verified API key is trusted before it is checked again (revocation delay)."""
    usage_grace_hours: int = 48
    """Late usage for a period is accepted into it this long after the period ends."""
    usage_future_skew_seconds: int = 300
    max_body_bytes: int = 8 * 1024 * 1024
    tax_rate: Decimal = Decimal(0)
    """VAT on invoices (``BILLING_TAX_RATE``, a fraction: 0.06 is 6%)."""
    allows_test_clocks: bool = True
    """Test clocks may be made and moved. Off in production unless
    ``BILLING_ALLOW_TEST_CLOCKS=1``: a clock moves a merchant's billing time."""
    metrics_cache_seconds: float = 5.0
    """``BILLING_METRICS_CACHE_SECONDS``: ``/metrics`` reads its stored figures (reconciliation,
    outbox, inbox, retention) from the database at most this often."""
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    stripe: StripeSettings = field(default_factory=StripeSettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    outgoing: OutgoingWebhookSettings = field(default_factory=OutgoingWebhookSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    seller: SellerSettings = field(default_factory=SellerSettings)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def check_production(self) -> None:
        """Refuse what production must not run with, each in one line that says what to set."""
        if not self.is_production:
            return
        if self.database.is_embedded and not self.database.allows_embedded_in_production:
            raise SettingsError(
                "BILLING_ENV=production needs DATABASE_URL (a PostgreSQL you run and back up);"
                " to use the embedded server anyway set BILLING_ALLOW_EMBEDDED_DATABASE=1"
            )
        if self.stripe.is_configured and not self.stripe.webhook_secret:
            raise SettingsError(
                "STRIPE_API_KEY is set but STRIPE_WEBHOOK_SECRET is not: set it to the signing"
                " secret of the Stripe webhook endpoint (whsec_...), or Stripe's answers are lost"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        environment = env.get("BILLING_ENV", "development")
        if environment not in ("development", "production", "test"):
            raise SettingsError(
                f"BILLING_ENV must be development, production or test, not {environment!r}"
            )
        log_format = env.get(
            "BILLING_LOG_FORMAT", "json" if environment == "production" else "console"
        )
        if log_format not in ("console", "json"):
            raise SettingsError(f"BILLING_LOG_FORMAT must be console or json, not {log_format!r}")
        database = DatabaseSettings(
            url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("BILLING_DATA_DIR", str(PROJECT_ROOT / ".data"))).resolve(),
            database=env.get("BILLING_DB_NAME", "billing"),
            pool_max=_int(env, "BILLING_DB_POOL_MAX", 20),
            statement_cache_size=(
                _count(env, "BILLING_DB_STATEMENT_CACHE_SIZE", 0)
                if env.get("BILLING_DB_STATEMENT_CACHE_SIZE", "") != ""
                else None
            ),
            wait_seconds=_seconds(env, "BILLING_DB_WAIT_SECONDS", 30.0),
            allows_embedded_in_production=_flag(env, "BILLING_ALLOW_EMBEDDED_DATABASE"),
            acquire_timeout_seconds=_positive_seconds(
                env, "BILLING_DB_ACQUIRE_TIMEOUT_SECONDS", 5.0
            ),
            connect_timeout_seconds=_positive_seconds(
                env, "BILLING_DB_CONNECT_TIMEOUT_SECONDS", 5.0
            ),
            citus_shard_count=_positive(env, "BILLING_CITUS_SHARD_COUNT", 32),
        )
        stripe = StripeSettings(
            api_key=env.get("STRIPE_API_KEY") or None,
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            api_base=env.get("STRIPE_API_BASE") or None,
            webhook_tolerance_seconds=_int(env, "STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300),
            timeout_seconds=_positive_seconds(env, "STRIPE_TIMEOUT_SECONDS", 15.0),
            outbox_lease_seconds=_positive_seconds(env, "STRIPE_OUTBOX_LEASE_SECONDS", 300.0),
        )
        host = env.get("BILLING_HOST", "127.0.0.1")
        port = _int(env, "BILLING_PORT", 8000)
        payments = PaymentSettings(
            public_url=_url(env, "BILLING_PUBLIC_URL") or f"http://{host}:{port}",
            is_public_url_set=bool(_url(env, "BILLING_PUBLIC_URL")),
            setup_success_url=_url(env, "BILLING_PAYMENT_SETUP_SUCCESS_URL"),
            setup_cancel_url=_url(env, "BILLING_PAYMENT_SETUP_CANCEL_URL"),
            portal_return_url=_url(env, "BILLING_PORTAL_RETURN_URL"),
            link_days=_positive(env, "BILLING_PAYMENT_SETUP_LINK_DAYS", 30),
        )
        retention = RetentionSettings(
            idempotency_days=_count(env, "BILLING_RETAIN_IDEMPOTENCY_DAYS", 7),
            stripe_events_days=_count(env, "BILLING_RETAIN_STRIPE_EVENTS_DAYS", 90),
            outbox_sent_days=_count(env, "BILLING_RETAIN_OUTBOX_SENT_DAYS", 30),
            reconciliations_days=_count(env, "BILLING_RETAIN_RECONCILIATIONS_DAYS", 730),
            audit_months=_count(env, "BILLING_RETAIN_AUDIT_MONTHS", 84),
            webhook_events_days=_count(env, "BILLING_RETAIN_WEBHOOK_EVENTS_DAYS", 30),
            payment_links_days=_count(env, "BILLING_RETAIN_PAYMENT_LINKS_DAYS", 30),
            batch_rows=_count(env, "BILLING_RETENTION_BATCH_ROWS", 1000),
        )
        if retention.batch_rows == 0:
            raise SettingsError("BILLING_RETENTION_BATCH_ROWS must be at least 1")
        outgoing = OutgoingWebhookSettings(
            allows_private_addresses=_flag(env, "BILLING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES"),
            requires_https=environment == "production",
            timeout_seconds=_positive_seconds(env, "BILLING_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            retry_hours=_count(env, "BILLING_WEBHOOK_RETRY_HOURS", 72),
            disable_after_failures=_count(env, "BILLING_WEBHOOK_DISABLE_AFTER_FAILURES", 20),
            usage_watch_seconds=_seconds(env, "BILLING_USAGE_WATCH_SECONDS", 60.0),
        )
        if outgoing.retry_hours == 0 or outgoing.disable_after_failures == 0:
            raise SettingsError(
                "BILLING_WEBHOOK_RETRY_HOURS and BILLING_WEBHOOK_DISABLE_AFTER_FAILURES must be"
                " at least 1"
            )
        if stripe.webhook_tolerance_seconds <= 0:
            # The SDK reads 0 as "no age check": a replayed event would be accepted forever.
            raise SettingsError(
                "STRIPE_WEBHOOK_TOLERANCE_SECONDS must be a positive number of seconds, not "
                f"{stripe.webhook_tolerance_seconds}"
            )
        limits = LimitSettings(
            json_max_depth=_positive(env, "BILLING_JSON_MAX_DEPTH", 32),
            properties_max_bytes=_positive(env, "BILLING_PROPERTIES_MAX_BYTES", 16 * 1024),
            body_timeout_seconds=_positive_seconds(env, "BILLING_BODY_TIMEOUT_SECONDS", 30.0),
            webhook_max_body_bytes=_positive(env, "STRIPE_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024),
            test_clock_max_advance_days=_positive(env, "BILLING_TEST_CLOCK_MAX_ADVANCE_DAYS", 0)
            or None,
        )
        seller = SellerSettings(
            legal_name=_text(env, "BILLING_SELLER_LEGAL_NAME", "Kefu Billing", 200),
            address=tuple(
                line.strip()
                for line in _text(env, "BILLING_SELLER_ADDRESS", "", 500)
                .replace("|", "\n")
                .splitlines()
                if line.strip()
            ),
            tax_id=_text(env, "BILLING_SELLER_TAX_ID", "", 60),
            email=_text(env, "BILLING_SELLER_EMAIL", "", 320),
        )
        capacity = CapacitySettings(
            max_in_flight=_positive(env, "BILLING_MAX_IN_FLIGHT", 128),
            shutdown_grace_seconds=_positive_seconds(env, "BILLING_SHUTDOWN_GRACE_SECONDS", 25.0),
            worker_backoff_max_seconds=_positive_seconds(
                env, "BILLING_WORKER_BACKOFF_MAX_SECONDS", 10.0
            ),
        )
        rate_limits = RateLimitSettings(
            basic=_count(env, "BILLING_RATE_LIMIT_BASIC", 500),
            advanced=_count(env, "BILLING_RATE_LIMIT_ADVANCED", 2000),
            custom=_count(env, "BILLING_RATE_LIMIT_CUSTOM", 5000),
            window_seconds=_positive(env, "BILLING_RATE_LIMIT_WINDOW_SECONDS", 10),
            api_processes=_positive(env, "BILLING_API_PROCESSES", 1),
        )
        settings = cls(
            environment=environment,
            host=host,
            port=port,
            log_format=log_format,
            log_level=env.get("BILLING_LOG_LEVEL", "INFO").upper(),
            key_cache_seconds=_seconds(env, "BILLING_KEY_CACHE_SECONDS", 3.0),
            usage_grace_hours=_int(env, "BILLING_USAGE_GRACE_HOURS", 48),
            max_body_bytes=_int(env, "BILLING_MAX_BODY_BYTES", 8 * 1024 * 1024),
            tax_rate=_rate(env, "BILLING_TAX_RATE"),
            allows_test_clocks=(
                environment != "production" or _flag(env, "BILLING_ALLOW_TEST_CLOCKS")
            ),
            metrics_cache_seconds=_seconds(env, "BILLING_METRICS_CACHE_SECONDS", 5.0),
            database=database,
            stripe=stripe,
            payments=payments,
            retention=retention,
            outgoing=outgoing,
            limits=limits,
            seller=seller,
            capacity=capacity,
            rate_limits=rate_limits,
        )
        settings.check_production()
        return settings

    def served_at(self, host: str, port: int) -> Settings:
        """The settings of a server listening at ``host:port`` (``billing serve --port``): the
        payment pages' addresses follow unless ``BILLING_PUBLIC_URL`` names them."""
        payments = self.payments
        if not payments.is_public_url_set:
            payments = PaymentSettings(
                public_url=f"http://{host}:{port}",
                setup_success_url=_unless_default(payments, "setup_success_url"),
                setup_cancel_url=_unless_default(payments, "setup_cancel_url"),
                portal_return_url=_unless_default(payments, "portal_return_url"),
                link_days=payments.link_days,
            )
        return replace(self, host=host, port=port, payments=payments)

    def with_database_url(self, url: str) -> Settings:
        return replace(self, database=replace(self.database, url=url))


def _text(env: Mapping[str, str], name: str, default: str, max_length: int) -> str:
    """A line of text printed on documents: trimmed, at most ``max_length`` characters, no
    control characters but the newlines an address may hold."""
    value = env.get(name, default).strip() or default
    if len(value) > max_length:
        raise SettingsError(f"{name} must be at most {max_length} characters, not {len(value)}")
    if any(ord(char) < 32 and char != "\n" for char in value):
        raise SettingsError(f"{name} must not hold control characters (tabs, NUL, ...)")
    return value


def _unless_default(payments: PaymentSettings, name: str) -> str:
    """A page address that was set on purpose ("" when it is the default one, made again)."""
    default = PaymentSettings(public_url=payments.public_url)
    value: str = getattr(payments, name)
    return "" if value == getattr(default, name) else value


def _url(env: Mapping[str, str], name: str) -> str:
    """An absolute http(s) address (unset: empty, the default applies)."""
    raw = env.get(name, "").strip()
    scheme, _, rest = raw.partition("://")
    if raw and (scheme not in ("http", "https") or not rest or any(c.isspace() for c in raw)):
        raise SettingsError(f"{name} must be an absolute http:// or https:// address, not {raw!r}")
    return raw


def _rate(env: Mapping[str, str], name: str) -> Decimal:
    raw = env.get(name) or "0"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise SettingsError(
            f"{name} must be a decimal fraction such as 0.06, not {raw!r}"
        ) from None
    if not Decimal(0) <= value < Decimal(1):
        raise SettingsError(f"{name} must be at least 0 and below 1, not {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting: ``1``/``true``/``yes`` or ``0``/``false``/``no`` (unset: no)."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration in seconds (``0.5`` allowed); not money, so a float is the right type."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, not {raw!r}")
    return value


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0 or (value == 0 and default != 0):
        raise SettingsError(f"{name} must be a positive whole number, not {value}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _seconds(env, name, default)
    if value == 0:
        raise SettingsError(f"{name} must be more than 0 seconds")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise SettingsError(f"{name} must not be negative (0 keeps everything), not {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
