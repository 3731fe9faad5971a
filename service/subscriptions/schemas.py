"""Request and response bodies for signup, subscriptions, contracts and test clocks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from plans.lines import InvoiceLine
from service.db.tables import Subscription, TestClock
from service.payments.schemas import (
    PaymentSetupOut,
    PaymentSetupRequest,
    PaymentTermsIn,
    PaymentTermsOut,
)
from service.tenancy.schemas import ApiKeyIssuedOut, MerchantCreate, MerchantOut
from service.wire import Input, Output, pattern

_CODE = r"^[a-z][a-z0-9_]{0,39}$"
_CODE_HINT = (
    "a code in lower case (a-z, digits, _), up to 40 characters, such as `basic`: "
    "GET /v1/plans lists them"
)
PlanCode = Annotated[str, pattern(_CODE, _CODE_HINT, examples=["advanced"])]
AddonCode = Annotated[str, pattern(_CODE, _CODE_HINT, examples=["fast_response"])]


class SignupRequest(Input):
    merchant: MerchantCreate
    plan: PlanCode
    plan_version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Defaults to the plan's newest version."""
    addons: list[AddonCode] = []
    trial_days: Annotated[int, msgspec.Meta(ge=0, le=365)] | None = None
    """Defaults to the plan's trial; 0 starts paying at once."""
    test_clock_id: UUID | None = None
    """Operators' simulations: the merchant lives on this test clock."""
    contract_overrides: dict[str, dict[str, Any]] | None = None
    """Custom tier only: negotiated prices, ``{charge_code: {field: value}}``."""
    payment_terms: PaymentTermsIn | None = None
    """How invoices are collected: charged to the card the merchant saves (sent until then),
    or, for a negotiated contract paying by bank transfer, always sent (``send_invoice``);
    ``days_until_due`` of sent invoices (the plan's when omitted)."""
    payment_setup: PaymentSetupRequest | None = None
    """Where Stripe's page sends the merchant back after saving a card (or not)."""


class PlanChangeRequest(Input):
    plan: PlanCode
    plan_version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    addons: list[AddonCode] | None = None
    """The add-ons after the change; omitted keeps the current ones."""
    when: Literal["auto", "now", "period_end"] = "auto"
    """``auto``: upgrades now (prorated), downgrades at period end."""


class CancelRequest(Input):
    at_period_end: bool = True
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class AddonsRequest(Input):
    addons: list[AddonCode]
    """The full set of add-ons after the change; takes effect now, prorated."""


class ContractRequest(Input):
    overrides: dict[str, dict[str, Any]]
    effective_from: datetime
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    payment_terms: PaymentTermsIn | None = None
    """The contract's payment terms (bank transfer: ``send_invoice``, with its own
    ``days_until_due``), from the next invoice pushed on; omitted: unchanged."""


class TestClockCreate(Input):
    frozen_time: datetime
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""


class TestClockAdvance(Input):
    frozen_time: datetime


class TestClockAttach(Input):
    merchant_id: UUID


class LineOut(Output):
    kind: str
    charge_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    rate: Decimal | None
    amount_minor: int
    currency: str
    period_start: datetime
    period_end: datetime
    explanation: str

    @classmethod
    def from_line(cls, line: InvoiceLine) -> LineOut:
        return cls(**{f: getattr(line, f) for f in cls.__struct_fields__})


class PreviewInvoiceOut(Output):
    """An invoice the period close will make, exactly as it will make it (lines and totals to
    the fen); it gets its number when it is made."""

    subscription_id: UUID
    kind: Literal["period", "immediate"]
    """``period``: a period's invoice (usage in arrears, the next period's fees); ``immediate``:
    lines billed at once (the first period's fee, prorations on some plans)."""
    status: Literal["open", "paid"]
    """``paid`` when nothing will be due (a trial, credits covering it)."""
    plan_code: str
    plan_version: int
    currency: str
    period_start: datetime
    period_end: datetime
    lines: list[LineOut]
    subtotal_minor: int
    discounts_minor: int
    credits_minor: int
    tax_minor: int
    total_minor: int
    credit_balance_applied_minor: int
    """What the merchant's credit balance takes off this invoice (a line, before tax)."""
    credit_balance_carried_minor: int
    """The credit balance after this invoice."""

    @classmethod
    def from_drafted(cls, drafted: Any) -> PreviewInvoiceOut:
        """From ``service.invoicing.preview.Drafted``: the rows the close wrote."""
        row = drafted.invoice
        fields = {
            name: getattr(row, name)
            for name in cls.__struct_fields__
            if name not in ("lines", "kind", "status")
        }
        return cls(
            **fields,
            kind=row.kind,
            status="paid" if row.status == "paid" else "open",
            lines=[
                LineOut(**{name: line[name] for name in LineOut.__struct_fields__})
                for line in drafted.lines
            ],
        )


class SubscriptionEventOut(Output):
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str
    actor_role: str
    actor_key_id: UUID | None
    at: datetime
    details: dict[str, Any]


class ScheduledChangeOut(Output):
    plan_code: str
    plan_version: int
    addons: list[str]
    effective_at: datetime


class SubscriptionOut(Output):
    id: UUID
    merchant_id: UUID
    plan_code: str
    plan_version: int
    addons: list[str]
    status: str
    currency: str
    timezone: str
    billing_period: str
    current_period_start: datetime
    current_period_end: datetime
    trial_end: datetime | None
    started_at: datetime
    cancel_at_period_end: bool
    canceled_at: datetime | None
    paused_at: datetime | None
    scheduled_change: ScheduledChangeOut | None
    pending_lines: list[LineOut] = []
    events: list[SubscriptionEventOut] | None = None

    @classmethod
    def from_row(
        cls,
        row: Subscription,
        *,
        events: list[dict[str, Any]] | None = None,
        pending: list[InvoiceLine] | None = None,
    ) -> SubscriptionOut:
        change = row.scheduled_change
        if isinstance(change, str | bytes):
            change = msgspec.json.decode(change)
        return cls(
            id=row.id,
            merchant_id=row.merchant_id,
            plan_code=row.plan_code,
            plan_version=row.plan_version,
            addons=list(row.addons),
            status=row.status,
            currency=row.currency,
            timezone=row.timezone,
            billing_period=row.billing_period,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            trial_end=row.trial_end,
            started_at=row.started_at,
            cancel_at_period_end=row.cancel_at_period_end,
            canceled_at=row.canceled_at,
            paused_at=row.paused_at,
            scheduled_change=ScheduledChangeOut(
                plan_code=change["plan_code"],
                plan_version=change["plan_version"],
                addons=change["addons"],
                effective_at=row.current_period_end,
            )
            if change
            else None,
            pending_lines=[LineOut.from_line(line) for line in pending or []],
            events=[
                SubscriptionEventOut(**{f: e[f] for f in SubscriptionEventOut.__struct_fields__})
                for e in events
            ]
            if events is not None
            else None,
        )


class SignupOut(Output):
    merchant: MerchantOut
    api_key: ApiKeyIssuedOut | None
    """The merchant's first key, shown once; null when this answer is an idempotent replay."""
    subscription: SubscriptionOut
    payment_setup: PaymentSetupOut | None = None
    """Where the merchant saves a way to pay: open ``url`` in its browser (no key needed; a
    Stripe Checkout page). Shown once, like the key: null on a replay (ask
    ``POST /v1/merchants/me/payment-setup`` for a new link)."""
    is_replay: bool = False


class ChangeQuoteOut(Output):
    takes_effect: str
    effective_at: datetime
    proration_lines: list[LineOut]
    proration_net_minor: int
    is_invoiced_immediately: bool
    next_invoice_lines: list[LineOut]
    """The lines of the next invoice the close makes after the change (``next_invoices[0]``)."""
    next_invoice_total_minor: int
    currency: str
    next_invoices: list[PreviewInvoiceOut] = []
    """The invoices the close makes after the change, in order, up to and including the one
    of the period open now (as ``GET /v1/invoices/upcoming`` would answer after it)."""


class TestClockOut(Output):
    id: UUID
    name: str
    frozen_time: datetime
    merchant_ids: list[UUID] = []

    @classmethod
    def from_row(cls, row: TestClock, merchant_ids: list[UUID] | None = None) -> TestClockOut:
        return cls(
            id=row.id, name=row.name, frozen_time=row.frozen_time, merchant_ids=merchant_ids or []
        )


class ContractOut(Output):
    merchant_id: UUID
    effective_from: datetime
    overrides: dict[str, dict[str, Any]]
    note: str
    payment_terms: PaymentTermsOut
