"""Per-merchant request rate limits, by tier, so that one merchant flooding the API cannot slow
the others down.

Every request made with a merchant's key takes one unit from that merchant's bucket in this
process; the bucket holds the tier's quota (``BILLING_RATE_LIMIT_<TIER>`` ÷
``BILLING_API_PROCESSES``) and refills continuously over ``BILLING_RATE_LIMIT_WINDOW_SECONDS``.
An empty bucket answers ``429`` with ``Retry-After`` before any other work is done (no body
read, no database), which is what keeps the refusal cheap on the single-event hot path. The
tier is the merchant's live subscription's plan tier, looked up once a minute per merchant.
Operator keys are not limited here (``BILLING_MAX_IN_FLIGHT`` still holds). A payment-setup
link, opened without a key, counts against the merchant it belongs to (``admit``).

The answers carry the fields of draft-ietf-httpapi-ratelimit-headers-10 (27 September 2025):
``RateLimit-Policy: "<tier>";q=<quota>;w=<window>`` and ``RateLimit: "<tier>";r=<remaining>;
t=<seconds>``, on every 429 and on every answer once less than half the quota is left (the draft
lets a server send them only near exhaustion; the hot path pays nothing before that).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from service.db.engine import current as current_database
from service.errors import RateLimited
from service.settings import TIERS, RateLimitSettings

TIER_SECONDS: Final = 60.0
"""How long a merchant's tier is trusted before it is looked up again (a plan change reaches the
limit within this time)."""

DRAFT: Final = "draft-ietf-httpapi-ratelimit-headers-10"

_TIER = """
SELECT pv.tier FROM subscriptions s
JOIN plan_versions pv ON pv.code = s.plan_code AND pv.version = s.plan_version
WHERE s.merchant_id = $1
ORDER BY (s.status = 'canceled'), s.created_at DESC
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one request's take from its merchant's bucket came to."""

    is_allowed: bool
    tier: str
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    """Seconds until at least one more unit is in the bucket (0 when it is full)."""

    @property
    def shows_headers(self) -> bool:
        """Refused, or less than half the quota left: the answer carries the RateLimit fields."""
        return not self.is_allowed or self.remaining * 2 < self.quota

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy`` and ``RateLimit`` as the draft writes them (structured fields:
        a quoted policy name, then integer parameters)."""
        return [
            (
                b"ratelimit-policy",
                f'"{self.tier}";q={self.quota};w={self.window_seconds}'.encode(),
            ),
            (b"ratelimit", f'"{self.tier}";r={self.remaining};t={self.reset_seconds}'.encode()),
        ]

    def refusal(self) -> RateLimited:
        return RateLimited(
            f"this merchant's {self.tier} plan allows {self.quota} requests per"
            f" {self.window_seconds} s on each API server, and they are used up: wait"
            " Retry-After seconds, send batches (POST /v1/usage/events/batch takes 10,000"
            " events a request) or move to a plan with a higher limit",
            retry_after=max(1, self.reset_seconds),
            **{"violated-policies": [self.tier]},
        )


class RateLimiter:
    """The buckets and tiers of one API process."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.is_enabled = any(settings.quota(tier) for tier in TIERS)
        self._buckets: dict[UUID, list[float]] = {}
        self._tiers: dict[UUID, tuple[str, float]] = {}

    def known_tier(self, merchant_id: UUID) -> str | None:
        """The merchant's tier if looked up less than `TIER_SECONDS` ago."""
        found = self._tiers.get(merchant_id)
        if found is None or self.clock() - found[1] > TIER_SECONDS:
            return None
        return found[0]

    async def look_up_tier(self, merchant_id: UUID) -> str:
        """The tier of the merchant's live (else latest) subscription; basic without one."""
        found = await current_database().pool.fetchval(_TIER, merchant_id)
        tier = str(found) if found else "basic"
        if len(self._tiers) > 100_000:  # bounded whatever the number of merchants
            self._tiers.clear()
        self._tiers[merchant_id] = (tier, self.clock())
        return tier

    def take(self, merchant_id: UUID, tier: str) -> Verdict | None:
        """Take one unit for a request of the merchant; ``None`` when its tier is unlimited."""
        quota = self.settings.quota(tier)
        if quota == 0:
            return None
        window = self.settings.window_seconds
        per_second = quota / window
        now = self.clock()
        bucket = self._buckets.get(merchant_id)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._forget_full_buckets(now, window)
            bucket = self._buckets[merchant_id] = [float(quota), now]
        tokens = min(float(quota), bucket[0] + (now - bucket[1]) * per_second)
        is_allowed = tokens >= 1.0
        if is_allowed:
            tokens -= 1.0
        bucket[0], bucket[1] = tokens, now
        missing = 1.0 - (tokens - math.floor(tokens)) if tokens < quota else 0.0
        return Verdict(
            is_allowed=is_allowed,
            tier=tier,
            quota=quota,
            window_seconds=window,
            remaining=int(tokens),
            reset_seconds=math.ceil(missing / per_second) if missing else 0,
        )

    async def admit(self, merchant_id: UUID) -> None:
        """Count a request made for the merchant without its key (a payment-setup link opened
        by its token): raise `RateLimited` (429, ``Retry-After``) when its quota is used up."""
        if not self.is_enabled:
            return
        tier = self.known_tier(merchant_id) or await self.look_up_tier(merchant_id)
        verdict = self.take(merchant_id, tier)
        if verdict is not None and not verdict.is_allowed:
            raise verdict.refusal()

    def _forget_full_buckets(self, now: float, window: int) -> None:
        """Drop buckets untouched for a whole window: they are full again, as a new one is."""
        for merchant_id, (_, updated) in list(self._buckets.items()):
            if now - updated >= window:
                del self._buckets[merchant_id]
