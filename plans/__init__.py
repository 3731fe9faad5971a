"""Kefu Billing pricing domain: pure (standard library + msgspec), no I/O but the catalog file.

The names below are the surface the service uses; each lives in the module named for it.
"""

from plans.catalog import (
    Addon,
    Catalog,
    CatalogError,
    PlanNotFoundError,
    PlanVersion,
    load_catalog,
    parse_catalog,
)
from plans.charges import UsageAggregate
from plans.compare import BreakEven, Comparison, PlanQuote, compare_plans
from plans.contracts import (
    AddonNotAllowedError,
    ContractOverrides,
    OverrideError,
    Terms,
    resolve_terms,
)
from plans.lines import InvoiceLine, LineKind
from plans.money import (
    CurrencyMismatchError,
    Money,
    UnknownCurrencyError,
    allocate,
    format_minor,
    round_half_up,
)
from plans.periods import (
    Period,
    anniversary_period_containing,
    calendar_period_containing,
    next_anniversary_period,
    next_calendar_period,
    next_period,
    period_containing,
)
from plans.proration import ProrationResult, prorate_change, prorate_terms, prorated_amount
from plans.rating import InvoiceDraft, LateUsage, rate, rate_terms, recurring_lines
from plans.sla import FaultRecord, SlaPolicy, SlaReport, sla_credit_lines

__all__ = [
    "Addon",
    "AddonNotAllowedError",
    "BreakEven",
    "Catalog",
    "CatalogError",
    "Comparison",
    "ContractOverrides",
    "CurrencyMismatchError",
    "FaultRecord",
    "InvoiceDraft",
    "InvoiceLine",
    "LateUsage",
    "LineKind",
    "Money",
    "OverrideError",
    "Period",
    "PlanNotFoundError",
    "PlanQuote",
    "PlanVersion",
    "ProrationResult",
    "SlaPolicy",
    "SlaReport",
    "Terms",
    "UnknownCurrencyError",
    "UsageAggregate",
    "allocate",
    "anniversary_period_containing",
    "calendar_period_containing",
    "compare_plans",
    "format_minor",
    "load_catalog",
    "next_anniversary_period",
    "next_calendar_period",
    "next_period",
    "parse_catalog",
    "period_containing",
    "prorate_change",
    "prorate_terms",
    "prorated_amount",
    "rate",
    "rate_terms",
    "recurring_lines",
    "resolve_terms",
    "round_half_up",
    "sla_credit_lines",
]
