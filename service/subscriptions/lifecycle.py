"""The subscription lifecycle: start, transitions, plan and add-on changes, cancel, pause, and
rolling forward through trial ends and period ends as time (or a test clock) passes.

Every function runs inside the caller's transaction, takes ``now`` from the caller's clock and
records a subscription event. Changes lock the subscription row without waiting: a second
change arriving while one is in flight gets a 409 and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import structlog

from plans.catalog import PlanVersion
from plans.contracts import AddonNotAllowedError, OverrideError, Terms, resolve_terms
from plans.lines import InvoiceLine
from plans.periods import Period, next_period, period_containing, zone
from plans.proration import (
    billed_share,
    describe_share,
    prorate_terms,
    prorated_amount,
    time_share,
)
from plans.rating import recurring_lines
from service.catalog import store as catalog_store
from service.db.tables import (
    Contract,
    PendingLine,
    Subscription,
    SubscriptionEvent,
    SubscriptionPeriod,
)
from service.errors import ConcurrentChange, Conflict, CurrencyMismatch, InvalidInput, NotFound
from service.outgoing import emit
from service.subscriptions.states import Status, check_changeable, check_transition
from service.tenancy.principal import SYSTEM_ACTOR, Actor
from service.tenancy.scope import owner_of, scoped

log = structlog.get_logger(__name__)


# -- reading -------------------------------------------------------------------------------


async def get(merchant_id: UUID | None, subscription_id: UUID) -> Subscription:
    """A subscription inside the merchant's scope (``None``: operator, any merchant)."""
    query = Subscription.objects().where(Subscription.id == subscription_id)
    row = await scoped(query, Subscription, merchant_id).first()
    if row is None:
        raise NotFound(f"subscription {subscription_id} not found")
    return row


async def lock_for_change(merchant_id: UUID | None, subscription_id: UUID) -> Subscription:
    """Lock the row for this transaction, or fail at once if another change holds it."""
    if merchant_id is None:  # an operator: the lock names the merchant (see ``owner_of``)
        merchant_id = await owner_of(Subscription, subscription_id)
        if merchant_id is None:
            raise NotFound(f"subscription {subscription_id} not found")
    query = (
        Subscription.objects()
        .where(Subscription.id == subscription_id)
        .lock_rows("UPDATE", nowait=True)
    )
    try:
        row = await scoped(query, Subscription, merchant_id).first()
    except asyncpg.LockNotAvailableError:
        raise ConcurrentChange(
            f"subscription {subscription_id} is being changed by another request; retry"
        ) from None
    if row is None:
        raise NotFound(f"subscription {subscription_id} not found")
    return row


async def live_subscription(merchant_id: UUID) -> Subscription | None:
    return (
        await Subscription.objects()
        .where(Subscription.merchant_id == merchant_id)
        .where(Subscription.status != Status.CANCELED.value)
        .first()
    )


async def events(merchant_id: UUID, subscription_id: UUID) -> list[dict[str, Any]]:
    return (
        await SubscriptionEvent.select()
        .where(SubscriptionEvent.merchant_id == merchant_id)
        .where(SubscriptionEvent.subscription_id == subscription_id)
        .order_by(SubscriptionEvent.id)
        .output(load_json=True)
    )


async def overrides_at(merchant_id: UUID, at: datetime) -> dict[str, Any] | None:
    """The contract terms in force at ``at`` (the latest effective on or before it)."""
    row = (
        await Contract.select(Contract.overrides)
        .where(Contract.merchant_id == merchant_id)
        .where(Contract.effective_from <= at)
        .order_by(Contract.effective_from, ascending=False)
        .first()
        .output(load_json=True)
    )
    return row["overrides"] if row else None


def full_period(sub: Subscription, at: datetime) -> Period:
    """The whole billing period (of the plan's kind) containing ``at``: fees are priced on it,
    so a first period that starts mid-month is charged its share of the month."""
    return period_containing(sub.billing_period, at, sub.timezone, sub.billing_anchor)


def fee_share(
    period: Period, *, is_trial: bool, billing_period: str, timezone: str, anchor: datetime
) -> Fraction:
    """The share of a whole billing period's recurring fees billed for one subscription period:
    1 for a whole period, the share of seconds for a first period that starts mid-period or a
    last one cut short by a cancellation (the fee was prorated, or credited back, by exactly
    that share), 0 for a trial. What an SLA credit of "that period's fees" is a share of."""
    if is_trial:
        return Fraction(0)
    whole = period_containing(billing_period, period.start, timezone, anchor)
    try:
        return billed_share(period, whole)
    except ValueError:  # not inside one billing period: priced as a whole one
        return Fraction(1)


def current_period(sub: Subscription) -> Period:
    return Period(
        sub.current_period_start.astimezone(zone(sub.timezone)),
        sub.current_period_end.astimezone(zone(sub.timezone)),
    )


async def terms_of(
    sub: Subscription,
    at: datetime,
    *,
    plan: PlanVersion | None = None,
    addons: Sequence[str] | None = None,
) -> Terms:
    plan = plan or await catalog_store.plan_version(sub.plan_code, sub.plan_version)
    overrides = await overrides_at(sub.merchant_id, at) if plan.allows_overrides else None
    return resolve(plan, list(sub.addons) if addons is None else addons, overrides)


def resolve(plan: PlanVersion, addons: Sequence[str], overrides: Any = None) -> Terms:
    try:
        return resolve_terms(plan, addons, overrides)
    except AddonNotAllowedError as error:
        raise InvalidInput(str(error), field="addons") from None
    except OverrideError as error:
        raise InvalidInput(str(error), field="overrides") from None


# -- recording -----------------------------------------------------------------------------


async def record_event(
    sub: Subscription,
    kind: str,
    *,
    actor: Actor,
    at: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    await SubscriptionEvent.insert(
        SubscriptionEvent(
            merchant_id=sub.merchant_id,
            subscription_id=sub.id,
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor_key_id=actor.key_id,
            actor_role=actor.role,
            at=at,
            details=details or {},
        )
    )
    await emit.subscription_recorded(sub, kind, at=at, from_status=from_status, to_status=to_status)


async def add_pending_lines(
    sub: Subscription, lines: Sequence[InvoiceLine], *, is_invoiced_immediately: bool
) -> None:
    rows = [
        PendingLine(
            merchant_id=sub.merchant_id,
            subscription_id=sub.id,
            line=msgspec.json.encode(line).decode(),
            amount_minor=line.amount_minor,
            currency=line.currency,
            is_invoiced_immediately=is_invoiced_immediately,
        )
        for line in lines
        if line.amount_minor != 0
    ]
    if rows:
        await PendingLine.insert(*rows)


async def pending_lines(merchant_id: UUID, subscription_id: UUID) -> list[InvoiceLine]:
    rows = (
        await PendingLine.select(PendingLine.line)
        .where(PendingLine.merchant_id == merchant_id)
        .where(PendingLine.subscription_id == subscription_id)
        .where(PendingLine.invoice_id.is_null())
        .order_by(PendingLine.created_at)
    )
    return [msgspec.json.decode(row["line"], type=InvoiceLine) for row in rows]


async def pending_lines_of(subs: Sequence[Subscription]) -> dict[UUID, list[InvoiceLine]]:
    """`pending_lines` of many subscriptions in one query, by subscription id."""
    by_subscription: dict[UUID, list[InvoiceLine]] = {sub.id: [] for sub in subs}
    if not subs:
        return by_subscription
    rows = (
        await PendingLine.select(PendingLine.subscription_id, PendingLine.line)
        .where(PendingLine.merchant_id.is_in(list({sub.merchant_id for sub in subs})))
        .where(PendingLine.subscription_id.is_in(list(by_subscription)))
        .where(PendingLine.invoice_id.is_null())
        .order_by(PendingLine.created_at)
    )
    for row in rows:
        by_subscription[row["subscription_id"]].append(
            msgspec.json.decode(row["line"], type=InvoiceLine)
        )
    return by_subscription


async def _save(sub: Subscription, now: datetime, *columns: Any) -> None:
    sub.lock_version += 1
    sub.updated_at = now
    await sub.save([*columns, Subscription.lock_version, Subscription.updated_at])


async def _open_period(sub: Subscription, period: Period, *, is_trial: bool) -> None:
    sub.current_period_start = period.start
    sub.current_period_end = period.end
    await SubscriptionPeriod.insert(
        SubscriptionPeriod(
            merchant_id=sub.merchant_id,
            subscription_id=sub.id,
            period_start=period.start,
            period_end=period.end,
            plan_code=sub.plan_code,
            plan_version=sub.plan_version,
            addons=list(sub.addons),
            fee_plan_code=sub.plan_code,
            fee_plan_version=sub.plan_version,
            fee_addons=list(sub.addons),
            is_trial=is_trial,
        )
    )


async def _end_period(sub: Subscription, at: datetime, *, is_final: bool) -> None:
    """Close the open period with the terms in force now (they rate its usage)."""
    await (
        SubscriptionPeriod.update(
            {
                SubscriptionPeriod.status: "ended",
                SubscriptionPeriod.ended_at: at,
                SubscriptionPeriod.period_end: at,
                SubscriptionPeriod.plan_code: sub.plan_code,
                SubscriptionPeriod.plan_version: sub.plan_version,
                SubscriptionPeriod.addons: list(sub.addons),
                SubscriptionPeriod.is_final: is_final,
            }
        )
        .where(SubscriptionPeriod.merchant_id == sub.merchant_id)
        .where(SubscriptionPeriod.subscription_id == sub.id)
        .where(SubscriptionPeriod.status == "open")
    )


async def _charge_first_period(sub: Subscription, terms: Terms, start: datetime) -> None:
    """The fee for the first (possibly partial) paid period, billed in advance right away."""
    whole = full_period(sub, start)
    lines = []
    for line in recurring_lines(terms, whole):
        amount = prorated_amount(line.amount_minor, whole, start, whole.end)
        if amount == line.amount_minor:
            lines.append(msgspec.structs.replace(line, period_start=start))
            continue
        share = time_share(whole, start, whole.end)  # the share the amount was computed from
        percent = (Decimal(share.numerator * 100) / Decimal(share.denominator)).quantize(
            Decimal("0.01")
        )
        lines.append(
            msgspec.structs.replace(
                line,
                amount_minor=amount,
                period_start=start,
                explanation=(
                    f"{line.explanation}; first period "
                    f"{describe_share(whole, start, whole.end)}: {percent}% of the period"
                ),
            )
        )
    await add_pending_lines(sub, lines, is_invoiced_immediately=True)


# -- starting ------------------------------------------------------------------------------


async def start(
    *,
    merchant_id: UUID,
    merchant_currency: str,
    merchant_timezone: str,
    plan: PlanVersion,
    addons: Sequence[str],
    trial_days: int | None,
    now: datetime,
    actor: Actor,
) -> Subscription:
    if plan.currency != merchant_currency:
        raise CurrencyMismatch(
            f"plan {plan.code} v{plan.version} is priced in {plan.currency}; "
            f"the merchant pays in {merchant_currency}",
            field="plan",
        )
    if await live_subscription(merchant_id) is not None:
        raise Conflict("the merchant already has a live subscription; change it instead")
    trial_days = plan.trial_days if trial_days is None else trial_days
    if trial_days < 0 or trial_days > 365:
        raise InvalidInput("trial_days must be between 0 and 365", field="trial_days")
    overrides = await overrides_at(merchant_id, now) if plan.allows_overrides else None
    terms = resolve(plan, addons, overrides)
    has_trial = trial_days > 0
    trial_end = now + timedelta(days=trial_days) if has_trial else None
    sub = Subscription(
        merchant_id=merchant_id,
        plan_code=plan.code,
        plan_version=plan.version,
        addons=list(addons),
        status=(Status.TRIALING if has_trial else Status.ACTIVE).value,
        currency=plan.currency,
        timezone=merchant_timezone,
        billing_period=plan.billing_period,
        billing_anchor=trial_end or now,
        current_period_start=now,
        current_period_end=trial_end or now,
        trial_end=trial_end,
        started_at=now,
        created_at=now,
        updated_at=now,
    )
    if trial_end is not None:
        period = Period(now, trial_end)
    else:
        period = Period(now, full_period(sub, now).end)
    sub.current_period_end = period.end
    await sub.save()
    await _open_period(sub, period, is_trial=has_trial)
    if not has_trial:  # before the event: its subscription shows the first period's fee
        await _charge_first_period(sub, terms, now)
    await record_event(
        sub,
        "created",
        actor=actor,
        at=now,
        to_status=sub.status,
        details={
            "plan": f"{plan.code} v{plan.version}",
            "addons": list(addons),
            "trial_end": trial_end.isoformat() if trial_end else None,
        },
    )
    return sub


# -- transitions ---------------------------------------------------------------------------


async def transition(
    sub: Subscription, target: Status, *, reason: str, actor: Actor, now: datetime
) -> Subscription:
    """Move to ``target`` if the state machine allows it, recording the event."""
    check_transition(sub.status, target)
    previous = sub.status
    sub.status = target.value
    columns: list[Any] = [Subscription.status]
    if target is Status.PAUSED:
        sub.paused_at = now
        columns.append(Subscription.paused_at)
    if previous == Status.PAUSED and target is Status.ACTIVE:
        sub.paused_at = None
        columns.append(Subscription.paused_at)
    if target is Status.CANCELED:
        sub.canceled_at = now
        columns.append(Subscription.canceled_at)
    await _save(sub, now, *columns)
    await record_event(
        sub,
        "status_changed",
        actor=actor,
        at=now,
        from_status=previous,
        to_status=target.value,
        reason=reason,
    )
    return sub


async def pause(sub: Subscription, *, actor: Actor, now: datetime) -> Subscription:
    return await transition(sub, Status.PAUSED, reason="paused on request", actor=actor, now=now)


async def resume(sub: Subscription, *, actor: Actor, now: datetime) -> Subscription:
    """Resume a paused subscription, or take back a cancellation scheduled for period end."""
    if sub.status == Status.PAUSED:
        return await transition(
            sub, Status.ACTIVE, reason="resumed on request", actor=actor, now=now
        )
    if sub.cancel_at_period_end and sub.status != Status.CANCELED:
        sub.cancel_at_period_end = False
        await _save(sub, now, Subscription.cancel_at_period_end)
        await record_event(
            sub, "cancel_undone", actor=actor, at=now, reason="scheduled cancellation taken back"
        )
        return sub
    raise Conflict(
        f"nothing to resume: the subscription is {sub.status} with no cancellation scheduled"
    )


# -- changes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """What a plan or add-on change will do, computed without changing anything."""

    old_terms: Terms
    new_terms: Terms
    new_plan: PlanVersion
    new_addons: list[str]
    takes_effect: str  # "now" or "period_end"
    effective_at: datetime
    proration_lines: tuple[InvoiceLine, ...]
    is_invoiced_immediately: bool

    @property
    def net_minor(self) -> int:
        return sum(line.amount_minor for line in self.proration_lines)


async def plan_change(
    sub: Subscription,
    *,
    new_plan: PlanVersion,
    new_addons: Sequence[str] | None,
    when: str,
    now: datetime,
) -> ChangePlan:
    """Work out a change: upgrades (a higher recurring fee) now, prorated; downgrades at
    period end. ``when`` = ``auto``, ``now`` or ``period_end`` overrides the choice."""
    check_changeable(sub.status, "change")
    if new_plan.currency != sub.currency:
        raise CurrencyMismatch(
            f"plan {new_plan.code} is priced in {new_plan.currency}; this subscription bills "
            f"in {sub.currency}",
            field="plan",
        )
    addons = list(sub.addons) if new_addons is None else list(new_addons)
    if (new_plan.code, new_plan.version, sorted(addons)) == (
        sub.plan_code,
        sub.plan_version,
        sorted(sub.addons),
    ):
        raise Conflict(
            f"the subscription is already on {new_plan.code} v{new_plan.version} with these add-ons"
        )
    old_terms = await terms_of(sub, now)
    new_terms = await terms_of(sub, now, plan=new_plan, addons=addons)
    whole = full_period(sub, now)
    old_fee = sum(line.amount_minor for line in recurring_lines(old_terms, whole))
    new_fee = sum(line.amount_minor for line in recurring_lines(new_terms, whole))
    if when == "auto":
        when = "period_end" if new_fee < old_fee else "now"
    if when == "now" and sub.status != Status.TRIALING:
        proration = prorate_terms(old_terms, new_terms, period=whole, changed_at=now)
        lines, immediate = proration.lines, proration.is_invoiced_immediately
    else:
        lines, immediate = (), False
    return ChangePlan(
        old_terms=old_terms,
        new_terms=new_terms,
        new_plan=new_plan,
        new_addons=addons,
        takes_effect=when,
        effective_at=now if when == "now" else sub.current_period_end,
        proration_lines=tuple(lines),
        is_invoiced_immediately=immediate,
    )


async def apply_change(
    sub: Subscription, change: ChangePlan, *, actor: Actor, now: datetime
) -> Subscription:
    old = f"{sub.plan_code} v{sub.plan_version}"
    new = f"{change.new_plan.code} v{change.new_plan.version}"
    if change.takes_effect == "period_end":
        sub.scheduled_change = msgspec.json.encode(
            {
                "plan_code": change.new_plan.code,
                "plan_version": change.new_plan.version,
                "addons": change.new_addons,
                "requested_at": now.isoformat(),
            }
        ).decode()
        await _save(sub, now, Subscription.scheduled_change)
        await record_event(
            sub,
            "change_scheduled",
            actor=actor,
            at=now,
            reason=f"{old} → {new} at period end",
            details={
                "from": old,
                "to": new,
                "addons": change.new_addons,
                "effective_at": change.effective_at.isoformat(),
            },
        )
        return sub
    sub.plan_code = change.new_plan.code
    sub.plan_version = change.new_plan.version
    sub.addons = change.new_addons
    sub.scheduled_change = None
    await _save(
        sub,
        now,
        Subscription.plan_code,
        Subscription.plan_version,
        Subscription.addons,
        Subscription.scheduled_change,
    )
    await add_pending_lines(
        sub, change.proration_lines, is_invoiced_immediately=change.is_invoiced_immediately
    )
    await record_event(
        sub,
        "plan_changed",
        actor=actor,
        at=now,
        reason=f"{old} → {new}",
        details={
            "from": old,
            "to": new,
            "addons": change.new_addons,
            "proration_net_minor": change.net_minor,
            "proration_invoiced_immediately": change.is_invoiced_immediately,
        },
    )
    return sub


async def cancel(
    sub: Subscription, *, at_period_end: bool, reason: str, actor: Actor, now: datetime
) -> Subscription:
    if sub.status == Status.CANCELED:
        raise Conflict("the subscription is already canceled")
    if at_period_end:
        if sub.cancel_at_period_end:
            raise Conflict("a cancellation at period end is already scheduled")
        sub.cancel_at_period_end = True
        await _save(sub, now, Subscription.cancel_at_period_end)
        await record_event(
            sub,
            "cancel_scheduled",
            actor=actor,
            at=now,
            reason=reason or "on request",
            details={"effective_at": sub.current_period_end.isoformat()},
        )
        return sub
    if sub.status != Status.TRIALING:
        # Credit what was paid in advance for the rest of the period.
        terms = await terms_of(sub, now)
        whole = full_period(sub, now)
        nothing = _without_fees(terms)
        credit = prorate_terms(terms, nothing, period=whole, changed_at=now)
        await add_pending_lines(sub, credit.lines, is_invoiced_immediately=True)
    await _end_period(sub, max(now, sub.current_period_start + timedelta(seconds=1)), is_final=True)
    return await transition(
        sub, Status.CANCELED, reason=reason or "canceled on request", actor=actor, now=now
    )


def _without_fees(terms: Terms) -> Terms:
    """The same terms with no recurring charges: what the merchant has after canceling."""
    from plans.charges import FlatAddon, FlatFee, PercentageDiscount, Surcharge

    recurring = (FlatFee, FlatAddon, Surcharge, PercentageDiscount)
    return msgspec.structs.replace(
        terms,
        addons=(),
        charges=tuple(c for c in terms.charges if not isinstance(c, recurring)),
    )


# -- time passing --------------------------------------------------------------------------


async def roll_forward(sub: Subscription, *, now: datetime, actor: Actor = SYSTEM_ACTOR) -> int:
    """Fire everything due by ``now``: trial end, period ends, scheduled changes and
    cancellations, each at its own instant. Returns how many steps were taken."""
    steps = 0
    while sub.status != Status.CANCELED and steps < 1200:
        if sub.status == Status.TRIALING and sub.trial_end is not None and sub.trial_end <= now:
            await _end_trial(sub, actor=actor)
        elif sub.current_period_end <= now:
            await _end_of_period(sub, actor=actor)
        else:
            break
        steps += 1
    return steps


async def _end_trial(sub: Subscription, *, actor: Actor) -> None:
    at = sub.trial_end
    assert at is not None
    await _end_period(sub, at, is_final=False)
    if sub.cancel_at_period_end:
        await transition(sub, Status.CANCELED, reason="canceled at trial end", actor=actor, now=at)
        return
    await _apply_scheduled(sub, actor=actor, at=at)
    first = Period(at, full_period(sub, at).end)
    await _open_period(sub, first, is_trial=False)
    await _save(sub, at, Subscription.current_period_start, Subscription.current_period_end)
    await transition(sub, Status.ACTIVE, reason="trial ended", actor=actor, now=at)
    await _charge_first_period(sub, await terms_of(sub, at), at)


async def _end_of_period(sub: Subscription, *, actor: Actor) -> None:
    at = sub.current_period_end
    if sub.cancel_at_period_end:
        await _end_period(sub, at, is_final=True)
        await transition(sub, Status.CANCELED, reason="canceled at period end", actor=actor, now=at)
        return
    await _end_period(sub, at, is_final=False)
    await _apply_scheduled(sub, actor=actor, at=at)
    following = next_period(
        sub.billing_period, current_period(sub), sub.timezone, sub.billing_anchor
    )
    await _open_period(sub, following, is_trial=False)
    await _save(sub, at, Subscription.current_period_start, Subscription.current_period_end)
    await record_event(
        sub,
        "period_started",
        actor=actor,
        at=at,
        details={
            "period_start": following.start.isoformat(),
            "period_end": following.end.isoformat(),
        },
    )


async def _apply_scheduled(sub: Subscription, *, actor: Actor, at: datetime) -> None:
    if not sub.scheduled_change:
        return
    change = (
        msgspec.json.decode(sub.scheduled_change)
        if isinstance(sub.scheduled_change, str | bytes)
        else sub.scheduled_change
    )
    old = f"{sub.plan_code} v{sub.plan_version}"
    sub.plan_code = change["plan_code"]
    sub.plan_version = change["plan_version"]
    sub.addons = list(change["addons"])
    sub.scheduled_change = None
    await _save(
        sub,
        at,
        Subscription.plan_code,
        Subscription.plan_version,
        Subscription.addons,
        Subscription.scheduled_change,
    )
    new = f"{sub.plan_code} v{sub.plan_version}"
    await record_event(
        sub,
        "plan_changed",
        actor=actor,
        at=at,
        reason=f"{old} → {new} (scheduled)",
        details={"from": old, "to": new, "addons": sub.addons, "scheduled": True},
    )
