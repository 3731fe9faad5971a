"""Gapless per-merchant invoice numbers, ``KB-2026-000123``, assigned at finalize.

The counter row is bumped inside the finalizing transaction: concurrent finalizes of one
merchant queue on it, and a transaction that rolls back gives its number back.
"""

from __future__ import annotations

from uuid import UUID

from service.db.tables import InvoiceNumberCounter

PREFIX = "KB"


async def next_number(merchant_id: UUID, year: int) -> str:
    rows = await InvoiceNumberCounter.raw(
        "INSERT INTO invoice_number_counters (merchant_id, year, last_number) VALUES ({}, {}, 1)"
        " ON CONFLICT (merchant_id, year)"
        " DO UPDATE SET last_number = invoice_number_counters.last_number + 1"
        " RETURNING last_number",
        merchant_id,
        year,
    )
    return f"{PREFIX}-{year}-{rows[0]['last_number']:06d}"


def credit_note_number(invoice_number: str, sequence: int) -> str:
    """Credit notes are numbered after their invoice: ``KB-2026-000123-CN2``."""
    return f"{invoice_number}-CN{sequence}"
