"""Sending deliveries: the worker's pass over the queue of each endpoint × merchant.

Each endpoint × merchant is a queue of its own, apart from the Stripe outbox: a delivery goes only
when no earlier one of its queue is waiting, so an endpoint hears about one merchant in the
order things happened, while a dead endpoint holds back nothing but itself (not Stripe pushes,
not other endpoints, not other merchants). The pattern is the Stripe outbox's: a delivery is
**claimed** by one committed statement (``in_flight`` with a lease), sent with no transaction
open, and its outcome **recorded** in one short transaction (the attempt in the delivery log,
the delivery's new status). Several workers run side by side; heads of different queues go at
once, a few at a time.

A failed attempt (no connection, no answer within the timeout, anything but a 2xx, a refused
address) is retried with exponential backoff and jitter (30 s, 1 min, 2 min ... capped at
6 hours) until the retry window (``BILLING_WEBHOOK_RETRY_HOURS``, 72 h) has passed; then the
delivery is given up (``failed``) and the next one of its queue goes. Every failed attempt adds
one to its endpoint's consecutive failures; at ``BILLING_WEBHOOK_DISABLE_AFTER_FAILURES`` (20)
the endpoint is disabled: its deliveries wait, untried, until an operator enables it again.
A 2xx sets the count back to zero.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import structlog

from service.db.engine import current as current_database
from service.db.engine import is_unavailable as is_database_unavailable
from service.db.engine import transaction_connection
from service.outgoing import signing
from service.outgoing.transport import Outcome, Sender
from service.settings import OutgoingWebhookSettings

log = structlog.get_logger(__name__)

BACKOFF_BASE_SECONDS: Final = 30.0
BACKOFF_CAP_SECONDS: Final = 6 * 3600.0
LEASE_MARGIN: Final = timedelta(seconds=30)
"""A claim's lease: the timeout and this much more (recording included)."""
_CANDIDATE_BATCH: Final = 20

_ENDPOINTS = """
SELECT merchant_id, id, url, signing_secret FROM webhook_endpoints
WHERE deleted_at IS NULL AND disabled_at IS NULL AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
"""

_DUE = (
    "((d.status = 'pending' AND d.next_attempt_at <= {now})"
    " OR (d.status = 'in_flight' AND d.lease_until <= {now}))"
)

# Due deliveries at the head of their queue (no earlier one of the same endpoint and merchant
# waiting), read without a lock. Raw SQL: the per-queue condition is not the ORM's.
_CANDIDATES = f"""
SELECT d.merchant_id, d.id
FROM outgoing_deliveries d
WHERE {_DUE.format(now="$1")}
  AND d.endpoint_id = ANY($2::uuid[])
  AND NOT EXISTS (
      SELECT 1 FROM outgoing_deliveries earlier
      WHERE earlier.merchant_id = d.merchant_id AND earlier.endpoint_id = d.endpoint_id
        AND earlier.seq < d.seq AND earlier.status IN ('pending', 'in_flight'))
ORDER BY d.seq
LIMIT $3
"""

# One statement, committed at once: the delivery is this worker's until the lease runs out. One
# another worker claimed meanwhile no longer matches (READ COMMITTED re-checks after waiting).
_CLAIM = f"""
UPDATE outgoing_deliveries d
SET status = 'in_flight', lease_until = $4, attempts = d.attempts + 1
FROM outgoing_events e
WHERE d.merchant_id = $1 AND d.id = $2 AND {_DUE.format(now="$3")}
  AND e.merchant_id = d.merchant_id AND e.id = d.event_id
RETURNING d.merchant_id, d.id, d.event_id, d.endpoint_id, d.attempts, d.retrying_since,
    e.type, e.body
"""

_RECORD_ATTEMPT = """
INSERT INTO outgoing_attempts (merchant_id, delivery_id, attempt, attempted_at, outcome,
    status_code, latency_ms, error, response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (merchant_id, delivery_id, attempt) DO NOTHING
"""

# Fenced by the attempt number: a delivery reclaimed after its lease ran out (or canceled with
# its endpoint) belongs to whoever holds it now, and this outcome only goes into the log.
_RECORD_OUTCOME = """
UPDATE outgoing_deliveries
SET status = $4, lease_until = NULL, next_attempt_at = $5, delivered_at = $6,
    last_status_code = $7, last_error = $8
WHERE merchant_id = $1 AND id = $2 AND status = 'in_flight' AND attempts = $3
RETURNING id
"""

_ENDPOINT_SUCCEEDED = """
UPDATE webhook_endpoints SET consecutive_failures = 0
WHERE merchant_id = $1 AND id = $2 AND consecutive_failures <> 0
"""

# Values on the right are the row's before the update: the endpoint is disabled by the failure
# that reaches the threshold, and only then.
_ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET
    consecutive_failures = consecutive_failures + 1,
    disabled_at = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $3
                       THEN $4 ELSE disabled_at END,
    disabled_reason = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $3
                           THEN $5 ELSE disabled_reason END
WHERE merchant_id = $1 AND id = $2
RETURNING consecutive_failures
"""


@dataclass
class DeliverySummary:
    delivered: int = 0
    retrying: int = 0
    given_up: int = 0
    endpoints_disabled: int = 0

    @property
    def is_idle(self) -> bool:
        return not (self.delivered or self.retrying or self.given_up or self.endpoints_disabled)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    merchant_id: UUID
    id: UUID
    url: str
    secret: signing.SigningSecret


@dataclass(frozen=True, slots=True)
class _Claim:
    merchant_id: UUID
    delivery_id: UUID
    event_id: UUID
    event_type: str
    body: bytes
    attempt: int
    retrying_since: datetime
    endpoint: _Endpoint


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """30 s, 1 min, 2 min ... capped at 6 hours, each drawn between half and the whole of it so
    that deliveries failing together do not come back together."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=ceiling * (0.5 + 0.5 * (rng or random).random()))


async def deliver_pass(
    sender: Sender,
    settings: OutgoingWebhookSettings,
    *,
    now: datetime,
    endpoint_ids: Sequence[UUID] | None = None,
    limit: int = 1000,
    concurrency: int = 8,
    should_stop: Callable[[], bool] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> DeliverySummary:
    """Send due deliveries (every endpoint's, or only ``endpoint_ids``') until none is ready or
    ``limit`` attempts were made. ``now`` schedules; ``wall_clock`` stamps signatures."""
    stop = should_stop or (lambda: False)
    summary = DeliverySummary()
    pool = current_database().pool
    slots = asyncio.Semaphore(concurrency)
    lease = timedelta(seconds=settings.timeout_seconds) + LEASE_MARGIN
    attempted = 0
    while attempted < limit and not stop():
        wanted = list(endpoint_ids) if endpoint_ids is not None else None
        endpoints = {
            row["id"]: _Endpoint(
                merchant_id=row["merchant_id"],
                id=row["id"],
                url=row["url"],
                secret=signing.SigningSecret(row["signing_secret"]),
            )
            for row in await pool.fetch(_ENDPOINTS, wanted)
        }
        if not endpoints:
            break
        candidates = await pool.fetch(
            _CANDIDATES, now, list(endpoints), min(_CANDIDATE_BATCH, limit - attempted)
        )
        claims = []
        for candidate in candidates:
            row = await pool.fetchrow(
                _CLAIM, candidate["merchant_id"], candidate["id"], now, now + lease
            )
            if row is not None:
                claims.append(
                    _Claim(
                        merchant_id=row["merchant_id"],
                        delivery_id=row["id"],
                        event_id=row["event_id"],
                        event_type=row["type"],
                        body=row["body"].encode(),
                        attempt=row["attempts"],
                        retrying_since=row["retrying_since"],
                        endpoint=endpoints[row["endpoint_id"]],
                    )
                )
        if not claims:
            break
        attempted += len(claims)

        async def one(claim: _Claim) -> None:
            try:
                async with slots:
                    outcome = await _send(sender, claim, wall_clock)
                await _record(claim, outcome, settings, summary, now=now)
            except Exception as error:  # one delivery's trouble must not stop the others;
                # its lease runs out and it is tried again
                if is_database_unavailable(error):
                    log.warning("webhook_delivery_unrecorded", delivery_id=str(claim.delivery_id))
                else:
                    log.exception("webhook_delivery_error", delivery_id=str(claim.delivery_id))

        await asyncio.gather(*(one(claim) for claim in claims))
    return summary


async def _send(sender: Sender, claim: _Claim, wall_clock: Callable[[], float]) -> Outcome:
    headers = {
        signing.SIGNATURE_HEADER: signing.header(
            claim.endpoint.secret, claim.body, int(wall_clock())
        ),
        "Kefu-Event-Id": str(claim.event_id),
        "Kefu-Event-Type": claim.event_type,
        "Kefu-Delivery-Id": str(claim.delivery_id),
    }
    return await sender.post(claim.endpoint.url, claim.body, headers)


async def _record(
    claim: _Claim,
    outcome: Outcome,
    settings: OutgoingWebhookSettings,
    summary: DeliverySummary,
    *,
    now: datetime,
) -> None:
    window = timedelta(hours=settings.retry_hours)
    if outcome.is_delivered:
        status, next_at = "delivered", now
    elif now >= claim.retrying_since + window:
        status, next_at = "failed", now
    else:
        status, next_at = "pending", now + backoff(claim.attempt)
    async with current_database().engine.transaction():
        connection = transaction_connection()
        await connection.execute(
            _RECORD_ATTEMPT,
            claim.merchant_id,
            claim.delivery_id,
            claim.attempt,
            now,
            outcome.outcome,
            outcome.status_code,
            outcome.latency_ms,
            outcome.error,
            outcome.excerpt,
        )
        is_ours = await connection.fetchval(
            _RECORD_OUTCOME,
            claim.merchant_id,
            claim.delivery_id,
            claim.attempt,
            status,
            next_at,
            now if outcome.is_delivered else None,
            outcome.status_code,
            outcome.error,
        )
    facts: dict[str, Any] = {
        "delivery_id": str(claim.delivery_id),
        "event_id": str(claim.event_id),
        "type": claim.event_type,
        "endpoint_id": str(claim.endpoint.id),
        "attempt": claim.attempt,
        "status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
    }
    if is_ours is None:
        log.warning("webhook_delivery_lease_lost", outcome=outcome.outcome, **facts)
    elif outcome.is_delivered:
        summary.delivered += 1
        log.info("webhook_delivered", **facts)
    elif status == "failed":
        summary.given_up += 1
        log.error("webhook_delivery_given_up", error=outcome.error, **facts)
    else:
        summary.retrying += 1
        log.warning(
            "webhook_delivery_failed",
            error=outcome.error,
            next_attempt_at=next_at.isoformat(),
            **facts,
        )
    await _endpoint_health(claim.endpoint, outcome, settings, summary, now=now)


async def _endpoint_health(
    endpoint: _Endpoint,
    outcome: Outcome,
    settings: OutgoingWebhookSettings,
    summary: DeliverySummary,
    *,
    now: datetime,
) -> None:
    """Consecutive failures of the endpoint, across its queues: back to 0 on a 2xx; the one
    that reaches the threshold disables it. A statement of its own (the endpoint may live on
    another shard than the delivery)."""
    pool = current_database().pool
    if outcome.is_delivered:
        await pool.execute(_ENDPOINT_SUCCEEDED, endpoint.merchant_id, endpoint.id)
        return
    threshold = settings.disable_after_failures
    failures = await pool.fetchval(
        _ENDPOINT_FAILED,
        endpoint.merchant_id,
        endpoint.id,
        threshold,
        now,
        f"{threshold} consecutive failed deliveries; the last: {outcome.error}"[:300],
    )
    if failures == threshold:
        summary.endpoints_disabled += 1
        log.error(
            "webhook_endpoint_disabled",
            endpoint_id=str(endpoint.id),
            consecutive_failures=failures,
            last_error=outcome.error,
        )
