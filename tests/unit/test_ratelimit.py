"""The token bucket behind the per-merchant rate limits, on a clock the test moves."""

from __future__ import annotations

from uuid import uuid4

from service.ratelimit import RateLimiter
from service.settings import RateLimitSettings, Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_the_quota_at_once_then_refuses_until_it_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(basic=10, window_seconds=10), clock=clock)
    merchant = uuid4()
    verdicts = [limiter.take(merchant, "basic") for _ in range(11)]
    assert [v.is_allowed for v in verdicts if v] == [True] * 10 + [False]
    refused = verdicts[-1]
    assert refused is not None
    assert (refused.remaining, refused.reset_seconds) == (0, 1)  # one a second comes back
    clock.now += 1.0
    assert limiter.take(merchant, "basic").is_allowed  # type: ignore[union-attr]
    assert not limiter.take(merchant, "basic").is_allowed  # type: ignore[union-attr]
    clock.now += 10.0  # a whole window: full again, never more than the quota
    again = [limiter.take(merchant, "basic") for _ in range(11)]
    assert [v.is_allowed for v in again if v] == [True] * 10 + [False]


def test_the_reset_is_the_time_until_the_next_whole_unit() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(basic=6, window_seconds=60), clock=clock)
    merchant = uuid4()
    for _ in range(6):
        limiter.take(merchant, "basic")
    clock.now += 4.0  # 0.4 of a unit back (one every 10 s)
    refused = limiter.take(merchant, "basic")
    assert refused is not None
    assert not refused.is_allowed
    assert refused.reset_seconds == 6
    assert refused.refusal().extra["retry_after"] == 6


def test_merchants_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(RateLimitSettings(basic=2, window_seconds=10), clock=Clock())
    noisy, quiet = uuid4(), uuid4()
    for _ in range(5):
        limiter.take(noisy, "basic")
    assert limiter.take(quiet, "basic").is_allowed  # type: ignore[union-attr]


def test_each_process_enforces_its_share_and_zero_means_no_limit() -> None:
    shared = RateLimitSettings(basic=500, advanced=2000, custom=0, api_processes=3)
    assert (shared.quota("basic"), shared.quota("advanced"), shared.quota("custom")) == (
        167,
        667,
        0,
    )
    assert shared.quota("gold") == 167  # an unknown tier is held to basic's
    limiter = RateLimiter(shared, clock=Clock())
    assert limiter.take(uuid4(), "custom") is None
    assert not RateLimiter(RateLimitSettings(basic=0, advanced=0, custom=0)).is_enabled


def test_the_limits_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "BILLING_RATE_LIMIT_BASIC": "50",
            "BILLING_RATE_LIMIT_ADVANCED": "0",
            "BILLING_RATE_LIMIT_WINDOW_SECONDS": "5",
            "BILLING_API_PROCESSES": "2",
        }
    )
    limits = settings.rate_limits
    assert (limits.basic, limits.advanced, limits.custom) == (50, 0, 5000)
    assert (limits.window_seconds, limits.api_processes) == (5, 2)
    assert limits.quota("basic") == 25
    for wrong in ({"BILLING_API_PROCESSES": "0"}, {"BILLING_RATE_LIMIT_BASIC": "-1"}):
        try:
            Settings.from_env(wrong)
        except SettingsError:
            continue
        raise AssertionError(f"{wrong} was accepted")
