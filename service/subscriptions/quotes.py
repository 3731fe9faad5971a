"""What a change would cost, and the invoices the close would make after it, without changing
anything: the change is made and the close run inside a transaction that is rolled back
(``service.invoicing.preview``), so the quote is what the invoices will be."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from plans.catalog import PlanVersion
from service.invoicing import preview
from service.subscriptions import lifecycle
from service.tenancy.principal import Actor


@dataclass(frozen=True, slots=True)
class ChangeQuote:
    change: lifecycle.ChangePlan
    next_invoices: list[preview.Drafted]


async def quote_change(
    merchant_scope: UUID | None,
    subscription_id: UUID,
    *,
    new_plan: PlanVersion,
    new_addons: list[str] | None,
    when: str,
    now: datetime,
    grace: timedelta,
    tax_rate: Decimal,
    actor: Actor,
) -> ChangeQuote:
    change, made = await preview.quote_change(
        merchant_scope,
        subscription_id,
        new_plan=new_plan,
        new_addons=new_addons,
        when=when,
        now=now,
        grace=grace,
        tax_rate=tax_rate,
        actor=actor,
    )
    return ChangeQuote(change=change, next_invoices=made)
