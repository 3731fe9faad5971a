"""Invoice numbers: ``KB-7F3A-000012``, unique across the whole ledger, gapless per merchant.

Each merchant gets a prefix of its own (as Stripe's customer invoice prefix), drawn at random
the first time one of its invoices is numbered and unique by a constraint, so two merchants'
numbers can never be equal. After it comes the merchant's own sequence: a row bumped inside the
finalizing transaction, so concurrent finalizes of one merchant queue on it and a transaction
that rolls back gives its number back. The period close finalizes a merchant's period invoices
in period order (``service.invoicing.close``), so their numbers follow the periods; invoices
billed at once (first-period fees, prorations) take theirs when they are finalized.

Numbers given before prefixes existed (``KB-2026-000001``, unique only per merchant) stay on
their finalized invoices; the sequence went on from where the merchant's numbers ended.
"""

from __future__ import annotations

import secrets
from typing import Final
from uuid import UUID

from service.db.engine import transaction_connection

BRAND: Final = "KB"
# Crockford's base 32: no I, L, O or U, so a prefix read aloud or retyped stays the same.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LETTERS: Final = frozenset(_ALPHABET[10:])
_SHORTEST: Final = 4
_LONGEST: Final = 8


async def next_number(merchant_id: UUID) -> str:
    """The merchant's next invoice number, taken in the caller's transaction."""
    connection = transaction_connection()
    prefix = await prefix_of(merchant_id)
    sequence = await connection.fetchval(
        "INSERT INTO invoice_number_sequences (merchant_id, last_number) VALUES ($1, 1)"
        " ON CONFLICT (merchant_id)"
        " DO UPDATE SET last_number = invoice_number_sequences.last_number + 1"
        " RETURNING last_number",
        merchant_id,
    )
    return f"{BRAND}-{prefix}-{sequence:06d}"


async def prefix_of(merchant_id: UUID) -> str:
    """The merchant's prefix, drawn now if it has none. A drawn prefix that another merchant
    holds, or a concurrent draw for the same merchant, inserts nothing; the loop then reads the
    merchant's prefix or draws again (longer after a few collisions)."""
    connection = transaction_connection()
    for attempt in range(64):
        prefix = await connection.fetchval(
            "SELECT prefix FROM invoice_number_prefixes WHERE merchant_id = $1", merchant_id
        )
        if prefix is not None:
            return str(prefix)
        length = min(_SHORTEST + attempt // 8, _LONGEST)
        await connection.execute(
            "INSERT INTO invoice_number_prefixes (merchant_id, prefix) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            merchant_id,
            draw_prefix(length),
        )
    raise RuntimeError(f"no free invoice number prefix found for merchant {merchant_id}")


def draw_prefix(length: int = _SHORTEST) -> str:
    """A random prefix of ``length`` characters with at least one letter (so it never reads as
    a year, as the numbers before prefixes did)."""
    while True:
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if _LETTERS.intersection(prefix):
            return prefix


def credit_note_number(invoice_number: str, sequence: int) -> str:
    """Credit notes are numbered after their invoice: ``KB-7F3A-000012-CN2``."""
    return f"{invoice_number}-CN{sequence}"
