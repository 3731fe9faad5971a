"""The catalog of event types we send: what each means and what its ``data.object`` is.

An endpoint names the types it wants (or ``*`` for all of them). The README's table is this
catalog in words; ``test_outgoing_catalog`` keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EventType(StrEnum):
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_TRIAL_WILL_END = "subscription.trial_will_end"
    SUBSCRIPTION_PAST_DUE = "subscription.past_due"
    SUBSCRIPTION_SUSPENDED = "subscription.suspended"
    SUBSCRIPTION_RESUMED = "subscription.resumed"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    INVOICE_FINALIZED = "invoice.finalized"
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
    INVOICE_VOIDED = "invoice.voided"
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached"
    PLAN_CHEAPER_AVAILABLE = "plan.cheaper_available"
    PAYMENT_METHOD_REQUIRED = "payment_method.required"


ALL_TYPES: Final = "*"
"""What an endpoint names to get every type, present and future."""

OBJECT_TYPES: Final[dict[EventType, str]] = {
    EventType.SUBSCRIPTION_CREATED: "subscription",
    EventType.SUBSCRIPTION_UPDATED: "subscription",
    EventType.SUBSCRIPTION_TRIAL_WILL_END: "subscription",
    EventType.SUBSCRIPTION_PAST_DUE: "subscription",
    EventType.SUBSCRIPTION_SUSPENDED: "subscription",
    EventType.SUBSCRIPTION_RESUMED: "subscription",
    EventType.SUBSCRIPTION_CANCELED: "subscription",
    EventType.INVOICE_FINALIZED: "invoice",
    EventType.INVOICE_PAID: "invoice",
    EventType.INVOICE_PAYMENT_FAILED: "invoice",
    EventType.INVOICE_VOIDED: "invoice",
    EventType.CREDIT_NOTE_ISSUED: "credit_note",
    EventType.USAGE_THRESHOLD_REACHED: "usage_summary",
    EventType.PLAN_CHEAPER_AVAILABLE: "plan_quote",
    EventType.PAYMENT_METHOD_REQUIRED: "merchant",
}
"""``data.object_type`` of each event: which answer of the API ``data.object`` is."""

MEANINGS: Final[dict[EventType, str]] = {
    EventType.SUBSCRIPTION_CREATED: "a subscription started (signup)",
    EventType.SUBSCRIPTION_UPDATED: (
        "a plan or add-on change (made or scheduled), a cancellation scheduled or taken back, a"
        " new period, a trial that became paid, a pause"
    ),
    EventType.SUBSCRIPTION_TRIAL_WILL_END: "the trial ends within 3 days",
    EventType.SUBSCRIPTION_PAST_DUE: "a payment failed: dunning retries it",
    EventType.SUBSCRIPTION_SUSPENDED: "the last dunning retry failed: stop serving the merchant",
    EventType.SUBSCRIPTION_RESUMED: (
        "back to active after past_due or suspended (the invoices were paid) or a pause"
    ),
    EventType.SUBSCRIPTION_CANCELED: "the subscription ended",
    EventType.INVOICE_FINALIZED: "an invoice was issued with its number",
    EventType.INVOICE_PAID: "an invoice is paid (by Stripe, by credit notes, or nothing was due)",
    EventType.INVOICE_PAYMENT_FAILED: "Stripe could not collect an invoice",
    EventType.INVOICE_VOIDED: "an invoice was voided",
    EventType.CREDIT_NOTE_ISSUED: "a credit note was issued against an invoice",
    EventType.USAGE_THRESHOLD_REACHED: (
        "the period's orders reached 80% or 100% of the orders its plan includes (once each"
        " per period)"
    ),
    EventType.PLAN_CHEAPER_AVAILABLE: (
        "this period's usage costs less on another plan (at most once per period), with the figures"
    ),
    EventType.PAYMENT_METHOD_REQUIRED: "the merchant has no way to pay on file for what is due",
}
"""What each type means, for the README and the API reference."""

TRIAL_WILL_END_AHEAD_DAYS: Final = 3
USAGE_THRESHOLD_PERCENTS: Final = (80, 100)


def known(name: str) -> bool:
    return name == ALL_TYPES or name in EventType._value2member_map_
