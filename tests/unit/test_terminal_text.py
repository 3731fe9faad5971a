"""Free text printed in the terminal stays text: Stripe's messages and ours are never read as
rich markup (a ``[price]`` kept, a ``[/b]`` harmless)."""

import io

from rich.console import Console

from service.demo import print_invoices
from service.finance.printing import print_reconciliation

STRIPE_WORDS = "No such price: 'price_1'; items[0][price] is invalid [/b] [bold]"


def _console() -> Console:
    return Console(file=io.StringIO(), width=400, color_system=None)


def test_reconciliation_mismatches_print_stripe_text_verbatim() -> None:
    console = _console()
    run = {
        "id": "run-1",
        "matched": 0,
        "mismatch_count": 1,
        "summaries": [],
        "mismatches": [
            {"object": "invoice", "kind": "amount", "reference": "in_[1]", "detail": STRIPE_WORDS}
        ],
    }
    print_reconciliation(console, run)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert STRIPE_WORDS in printed
    assert "in_[1]" in printed


def test_invoice_lines_print_their_text_verbatim() -> None:
    console = _console()
    invoice = {
        "number": "KB-[1]",
        "merchant_name": "[red]Shop[/red]",
        "tier": "basic",
        "period_start": "2026-09-01T00:00:00+08:00",
        "period_end": "2026-10-01T00:00:00+08:00",
        "status": "open",
        "currency": "CNY",
        "total_minor": 100,
        "lines": [{"description": "Fee [/b]", "explanation": STRIPE_WORDS, "amount_minor": 100}],
    }
    print_invoices(console, [invoice])
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[red]Shop[/red]" in printed
    assert "KB-[1]" in printed
    assert "Fee [/b]" in printed
    assert "items[0][price]" in printed
