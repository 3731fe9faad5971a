"""What the API asks of a subscription, each as one transaction: lock the row, bring it up to
its clock's ``now``, make the change, record it in the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from service.audit import log as audit
from service.catalog import store as catalog_store
from service.db.engine import current as current_database
from service.db.tables import Subscription
from service.subscriptions import clocks, lifecycle, quotes
from service.subscriptions.schemas import PlanChangeRequest
from service.tenancy.principal import Actor


async def _change(
    merchant_scope: UUID | None,
    subscription_id: UUID,
    action: str,
    actor: Actor,
    work: Callable[[Subscription, datetime], Awaitable[Subscription]],
    details: dict[str, Any] | None = None,
) -> Subscription:
    async with current_database().engine.transaction():
        sub = await lifecycle.lock_for_change(merchant_scope, subscription_id)
        now = (await clocks.clock_for_merchant(sub.merchant_id)).now()
        await lifecycle.roll_forward(sub, now=now)
        before = {
            "status": sub.status,
            "plan": f"{sub.plan_code} v{sub.plan_version}",
            "addons": list(sub.addons),
            "cancel_at_period_end": sub.cancel_at_period_end,
        }
        sub = await work(sub, now)
        after = {
            "status": sub.status,
            "plan": f"{sub.plan_code} v{sub.plan_version}",
            "addons": list(sub.addons),
            "cancel_at_period_end": sub.cancel_at_period_end,
        }
        await audit.record(
            actor,
            merchant_id=sub.merchant_id,
            entity="subscription",
            entity_id=sub.id,
            action=action,
            changes={"before": before, "after": after, **(details or {})},
        )
    return sub


async def change_plan(
    merchant_scope: UUID | None, subscription_id: UUID, data: PlanChangeRequest, actor: Actor
) -> Subscription:
    plan = await catalog_store.plan_version(data.plan, data.plan_version)

    async def work(sub: Subscription, now: datetime) -> Subscription:
        change = await lifecycle.plan_change(
            sub, new_plan=plan, new_addons=data.addons, when=data.when, now=now
        )
        return await lifecycle.apply_change(sub, change, actor=actor, now=now)

    return await _change(merchant_scope, subscription_id, "plan_changed", actor, work)


async def set_addons(
    merchant_scope: UUID | None, subscription_id: UUID, addons: list[str], actor: Actor
) -> Subscription:
    async def work(sub: Subscription, now: datetime) -> Subscription:
        plan = await catalog_store.plan_version(sub.plan_code, sub.plan_version)
        change = await lifecycle.plan_change(
            sub, new_plan=plan, new_addons=addons, when="now", now=now
        )
        return await lifecycle.apply_change(sub, change, actor=actor, now=now)

    return await _change(merchant_scope, subscription_id, "addons_changed", actor, work)


async def cancel(
    merchant_scope: UUID | None,
    subscription_id: UUID,
    *,
    at_period_end: bool,
    reason: str,
    actor: Actor,
) -> Subscription:
    async def work(sub: Subscription, now: datetime) -> Subscription:
        return await lifecycle.cancel(
            sub, at_period_end=at_period_end, reason=reason, actor=actor, now=now
        )

    return await _change(merchant_scope, subscription_id, "canceled", actor, work)


async def pause(merchant_scope: UUID | None, subscription_id: UUID, actor: Actor) -> Subscription:
    async def work(sub: Subscription, now: datetime) -> Subscription:
        return await lifecycle.pause(sub, actor=actor, now=now)

    return await _change(merchant_scope, subscription_id, "paused", actor, work)


async def resume(merchant_scope: UUID | None, subscription_id: UUID, actor: Actor) -> Subscription:
    async def work(sub: Subscription, now: datetime) -> Subscription:
        return await lifecycle.resume(sub, actor=actor, now=now)

    return await _change(merchant_scope, subscription_id, "resumed", actor, work)


async def quote(
    merchant_scope: UUID | None,
    subscription_id: UUID,
    data: PlanChangeRequest,
    *,
    tax_rate: Decimal,
    grace: timedelta,
    actor: Actor,
) -> quotes.ChangeQuote:
    """Changes nothing: the change and the close run in a transaction that is rolled back."""
    plan = await catalog_store.plan_version(data.plan, data.plan_version)
    sub = await lifecycle.get(merchant_scope, subscription_id)
    now = (await clocks.clock_for_merchant(sub.merchant_id)).now()
    return await quotes.quote_change(
        sub.merchant_id,  # found in the caller's scope; its lock names the merchant
        subscription_id,
        new_plan=plan,
        new_addons=data.addons,
        when=data.when,
        now=now,
        grace=grace,
        tax_rate=tax_rate,
        actor=actor,
    )


async def advance_clock(
    clock_id: UUID, to: datetime, actor: Actor, *, max_days: int | None = None
) -> int:
    """Move a test clock and fire everything that fell due for its merchants' subscriptions
    (at most ``max_days`` at once when set: ``BILLING_TEST_CLOCK_MAX_ADVANCE_DAYS``)."""
    async with current_database().engine.transaction():
        clock = await clocks.get(clock_id, lock=True)
        clock = await clocks.move(clock, to, max_days=max_days)
        steps = 0
        for merchant_id in await clocks.attached_merchants(clock_id):
            for sub in (
                await Subscription.objects()
                .where(Subscription.merchant_id == merchant_id)
                .where(Subscription.status != "canceled")
                .lock_rows("UPDATE")
            ):
                steps += await lifecycle.roll_forward(sub, now=clock.frozen_time)
        await audit.record(
            actor,
            merchant_id=None,
            entity="test_clock",
            entity_id=clock_id,
            action="advanced",
            changes={"frozen_time": to.isoformat(), "steps": steps},
        )
    return steps
