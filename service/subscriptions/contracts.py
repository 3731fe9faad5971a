"""Custom-tier contracts: negotiated prices per merchant, effective from a date."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from plans.catalog import PlanVersion
from service.audit import log as audit
from service.catalog import store as catalog_store
from service.db.tables import Contract
from service.errors import InvalidInput
from service.payments import terms
from service.payments.schemas import PaymentTermsIn
from service.subscriptions import lifecycle
from service.tenancy.principal import Actor


async def set_terms(
    merchant_id: UUID,
    overrides: dict[str, dict[str, Any]],
    *,
    effective_from: datetime,
    note: str,
    actor: Actor,
    plan: PlanVersion | None = None,
    payment_terms: PaymentTermsIn | None = None,
) -> Contract:
    """Record contract terms from ``effective_from`` on, checked against the merchant's plan;
    ``payment_terms`` (how its invoices are collected) apply from the next invoice pushed."""
    if plan is None:
        subscription = await lifecycle.live_subscription(merchant_id)
        if subscription is None:
            raise InvalidInput("the merchant has no live subscription to set a contract on")
        plan = await catalog_store.plan_version(subscription.plan_code, subscription.plan_version)
        addons: list[str] = list(subscription.addons)
    else:
        addons = []
    if not plan.allows_overrides:
        raise InvalidInput(
            f"plan {plan.code} v{plan.version} has catalog prices; contracts are for negotiated "
            "plans (custom)",
            field="overrides",
        )
    lifecycle.resolve(plan, addons, overrides)  # refuses unknown charges, fields and values
    if payment_terms is not None:
        await terms.set_terms(merchant_id, payment_terms, plan=plan, actor=actor)
    encoded = msgspec.json.encode(overrides).decode()
    rows = await Contract.raw(
        "INSERT INTO contracts (merchant_id, effective_from, overrides, note)"
        " VALUES ({}, {}, {}::jsonb, {})"
        " ON CONFLICT (merchant_id, effective_from)"
        " DO UPDATE SET overrides = EXCLUDED.overrides, note = EXCLUDED.note"
        " RETURNING id",
        merchant_id,
        effective_from,
        encoded,
        note,
    )
    await audit.record(
        actor,
        merchant_id=merchant_id,
        entity="contract",
        entity_id=rows[0]["id"],
        action="set",
        changes={"overrides": overrides, "effective_from": effective_from.isoformat()},
    )
    contract = await Contract.objects().where(Contract.id == rows[0]["id"]).first()
    assert contract is not None
    return contract
