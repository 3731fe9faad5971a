"""Printing a stored reconciliation run for people: the summary per currency, the mismatches."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from plans.money import format_minor


def print_reconciliation(console: Console, run: dict[str, object]) -> None:
    """A stored reconciliation run as tables: the summary per currency, then the mismatches."""
    headers = ("currency", "billed", "collected", "refunded", "Stripe charged", "Stripe fees",
               "Stripe net", "difference")  # fmt: skip
    summary = RichTable(*headers, title="reconciliation")
    for row in run["summaries"]:  # type: ignore[attr-defined]
        currency = row["currency"]
        summary.add_row(
            currency,
            *(format_minor(row[name], currency) for name in (
                "billed_minor", "collected_minor", "refunded_minor", "stripe_charged_minor",
                "stripe_fees_minor", "stripe_net_minor", "difference_minor")),
        )  # fmt: skip
    console.print(summary)
    console.print(
        f"{run['matched']} matched, {run['mismatch_count']} mismatch(es)  (run {run['id']})"
    )
    if run["mismatches"]:
        table = RichTable("object", "kind", "reference", "what differs")
        for item in run["mismatches"]:  # type: ignore[attr-defined]
            # Stripe's words and ours are text, never markup: `items[0][price]` stays as it is.
            table.add_row(*(escape(str(item[name])) for name in ("object", "kind", "reference",
                                                                 "detail")))  # fmt: skip
        console.print(table)
