"""Finance answers: MRR per tier and the month at a glance (amounts: minor units + decimal)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

import msgspec

from plans.money import minor_to_major
from service.wire import Input

Amount = Annotated[str, msgspec.Meta(pattern=r"^-?\d+(\.\d+)?$", description="major units")]


def _major(amount_minor: int, currency: str) -> str:
    return format(minor_to_major(amount_minor, currency), "f")


class TierMrrOut(msgspec.Struct, kw_only=True):
    tier: str
    currency: str
    mrr_minor: int
    mrr: Amount
    subscriptions: int

    @classmethod
    def of(cls, tier: str, currency: str, mrr_minor: int, subscriptions: int) -> TierMrrOut:
        return cls(tier=tier, currency=currency, mrr_minor=mrr_minor,
                   mrr=_major(mrr_minor, currency), subscriptions=subscriptions)  # fmt: skip


class MrrOut(msgspec.Struct, kw_only=True):
    on: str
    timezone: str
    tiers: list[TierMrrOut]


class MonthSummaryOut(msgspec.Struct, kw_only=True):
    month: str
    currency: str
    billed_minor: int
    billed: Amount
    collected_minor: int
    collected: Amount
    invoice_status_counts: dict[str, int]


class ReconciliationCreate(Input):
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = "Asia/Shanghai"
    merchant_id: UUID | None = None
