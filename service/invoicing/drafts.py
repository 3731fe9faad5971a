"""Drafting a subscription period's invoice with ``plans``: usage in arrears under the terms in
force at the period's end, the next period's recurring fees in advance under the terms that will
hold then, and whatever lines are waiting (proration, first-period fees)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

import msgspec

from plans.charges import Phase, UsageAggregate
from plans.contracts import Terms
from plans.lines import InvoiceLine
from plans.periods import Period
from plans.rating import InvoiceDraft, LateUsage, rate_terms, recurring_lines
from plans.sla import SlaReport


def draft(
    *,
    usage_terms: Terms,
    usage_period: Period,
    aggregates: Mapping[str, UsageAggregate],
    fee_terms: Terms | None,
    fee_period: Period | None,
    pending: Sequence[InvoiceLine] = (),
    sla_report: SlaReport | None = None,
    late_usage: Sequence[LateUsage] = (),
    tax_rate: Decimal = Decimal(0),
    credit_balance_minor: int = 0,
    bill_usage: bool = True,
    sla_billed_share: Fraction = Fraction(1),
) -> InvoiceDraft:
    """One invoice: ``fee_terms``/``fee_period`` None on a final invoice; ``bill_usage`` False
    for a trial period (its usage is free); ``sla_billed_share`` the share of a whole period's
    fees billed for the usage period (what an SLA credit is a share of)."""
    if not bill_usage:
        usage_terms = without_usage(usage_terms)
    advance = (
        recurring_lines(fee_terms, fee_period)
        if fee_terms is not None and fee_period is not None
        else []
    )
    return rate_terms(
        usage_terms,
        usage_period=usage_period,
        aggregates=aggregates if bill_usage else {},
        fee_period=None,
        sla_report=sla_report,
        tax_rate=tax_rate,
        pending_lines=[*pending, *advance],
        late_usage=late_usage,
        credit_balance_minor=credit_balance_minor,
        sla_billed_share=sla_billed_share,
    )


def without_usage(terms: Terms) -> Terms:
    """The terms with no usage charges and no minimum commitment (a trial, an immediate
    invoice): nothing is rated from usage, and no true-up appears."""
    kept = tuple(
        charge for charge in terms.charges if charge.phase not in (Phase.USAGE, Phase.COMMITMENT)
    )
    return msgspec.structs.replace(terms, charges=kept)
