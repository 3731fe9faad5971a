"""Test clocks: movable time for a merchant, like Stripe's.

A merchant attached to a test clock lives at the clock's ``frozen_time``; advancing the clock
fires whatever falls due (trial ends, period ends, scheduled changes). Everyone else lives on
the system clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from service.clock import SYSTEM_CLOCK, Clock, FrozenClock
from service.db.tables import Merchant, Subscription, TestClock
from service.errors import Conflict, InvalidInput, NotFound


async def create(name: str, frozen_time: datetime) -> TestClock:
    if frozen_time.tzinfo is None:
        raise InvalidInput("frozen_time needs a timezone offset", field="frozen_time")
    clock = TestClock(name=name, frozen_time=frozen_time)
    await clock.save()
    return clock


async def get(clock_id: UUID, *, lock: bool = False) -> TestClock:
    query = TestClock.objects().where(TestClock.id == clock_id)
    if lock:
        query = query.lock_rows("UPDATE")
    clock = await query.first()
    if clock is None:
        raise NotFound(f"test clock {clock_id} not found")
    return clock


async def attach(clock_id: UUID, merchant_id: UUID) -> None:
    """Attach a merchant that has no subscription yet (its history must all be on one clock)."""
    await get(clock_id)
    merchant = await Merchant.objects().where(Merchant.id == merchant_id).first()
    if merchant is None:
        raise NotFound(f"merchant {merchant_id} not found")
    has_subscription = await Subscription.exists().where(Subscription.merchant_id == merchant_id)
    if has_subscription and merchant.test_clock_id != clock_id:
        raise Conflict("attach a merchant to a test clock before it subscribes")
    await Merchant.update({Merchant.test_clock_id: clock_id}).where(Merchant.id == merchant_id)


async def move(clock: TestClock, to: datetime, *, max_days: int | None = None) -> TestClock:
    if to.tzinfo is None:
        raise InvalidInput("the new time needs a timezone offset", field="frozen_time")
    if to < clock.frozen_time:
        raise InvalidInput("a test clock only moves forward", field="frozen_time")
    if max_days is not None and to - clock.frozen_time > timedelta(days=max_days):
        raise InvalidInput(
            f"this service moves a test clock at most {max_days} days at once "
            "(BILLING_TEST_CLOCK_MAX_ADVANCE_DAYS): advance in steps",
            field="frozen_time",
        )
    clock.frozen_time = to
    await clock.save([TestClock.frozen_time])
    return clock


async def attached_merchants(clock_id: UUID) -> list[UUID]:
    rows = await Merchant.select(Merchant.id).where(Merchant.test_clock_id == clock_id)
    return [row["id"] for row in rows]


async def clock_for_merchant(merchant_id: UUID) -> Clock:
    """The merchant's clock: its test clock's time, or the system clock."""
    rows = await TestClock.raw(
        "SELECT c.frozen_time FROM merchants m JOIN test_clocks c ON c.id = m.test_clock_id"
        " WHERE m.id = {}",
        merchant_id,
    )
    return FrozenClock(rows[0]["frozen_time"]) if rows else SYSTEM_CLOCK
