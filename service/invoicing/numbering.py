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
from collections.abc import Sequence
from typing import Final
from uuid import UUID

from service.db.engine import transaction_connection

BRAND: Final = "KB"
# Crockford's base 32: no I, L, O or U, so a prefix read aloud or retyped stays the same.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LETTERS: Final = frozenset(_ALPHABET[10:])
_SHORTEST: Final = 4
_LONGEST: Final = 8


# One round trip for a merchant that has its prefix: bump its sequence, read its prefix.
_NEXT = """
WITH bumped AS (
    INSERT INTO invoice_number_sequences (merchant_id, last_number) VALUES ($1, 1)
    ON CONFLICT (merchant_id)
    DO UPDATE SET last_number = invoice_number_sequences.last_number + 1
    RETURNING last_number
)
SELECT (SELECT prefix FROM invoice_number_prefixes WHERE merchant_id = $1) AS prefix,
       last_number
FROM bumped
"""

# The merchant's prefix, or a drawn one inserted for it, in one statement. Inserts nothing when
# the merchant has one already, when another merchant holds the drawn one, or when a
# concurrent draw for this merchant got there first (then the statement answers nothing).
_DRAW = """
WITH existing AS (SELECT prefix FROM invoice_number_prefixes WHERE merchant_id = $1),
drawn AS (
    INSERT INTO invoice_number_prefixes (merchant_id, prefix)
    SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT DO NOTHING
    RETURNING prefix
)
SELECT prefix FROM existing UNION ALL SELECT prefix FROM drawn
"""


async def next_number(merchant_id: UUID) -> str:
    """The merchant's next invoice number, taken in the caller's transaction."""
    row = await transaction_connection().fetchrow(_NEXT, merchant_id)
    prefix = row["prefix"] or await prefix_of(merchant_id)
    return f"{BRAND}-{prefix}-{row['last_number']:06d}"


# Prefixes drawn for many merchants at once (the period close's batches): a merchant that got
# one meanwhile, or a drawn prefix another merchant holds, is left out and drawn alone.
_DRAW_MANY = """
INSERT INTO invoice_number_prefixes (merchant_id, prefix)
SELECT * FROM unnest($1::uuid[], $2::text[])
ON CONFLICT DO NOTHING
RETURNING merchant_id, prefix
"""


async def next_numbers(merchant_ids: Sequence[UUID]) -> dict[UUID, str]:
    """The next number of each of several merchants (each named once), taken in the caller's
    transaction: one pipelined round trip of the single-merchant statement (each names its
    merchant, as a row lock must on Citus), in merchant order so two batches never wait on
    each other's rows in a circle."""
    ordered = sorted(merchant_ids)
    if not ordered:
        return {}
    connection = transaction_connection()
    rows = await connection.fetchmany(_NEXT, [(merchant_id,) for merchant_id in ordered])
    prefixes = {m: row["prefix"] for m, row in zip(ordered, rows, strict=True)}
    missing = [m for m, prefix in prefixes.items() if prefix is None]
    if missing:
        drawn = [draw_prefix() for _ in missing]
        for row in await connection.fetch(_DRAW_MANY, missing, drawn):
            prefixes[row["merchant_id"]] = row["prefix"]
        for merchant_id in missing:
            if prefixes[merchant_id] is None:
                prefixes[merchant_id] = await prefix_of(merchant_id)
    return {
        m: f"{BRAND}-{prefixes[m]}-{row['last_number']:06d}"
        for m, row in zip(ordered, rows, strict=True)
    }


async def prefix_of(merchant_id: UUID) -> str:
    """The merchant's prefix, drawn now if it has none (longer after a few collisions)."""
    connection = transaction_connection()
    for attempt in range(64):
        length = min(_SHORTEST + attempt // 8, _LONGEST)
        prefix = await connection.fetchval(_DRAW, merchant_id, draw_prefix(length))
        if prefix is None:  # a concurrent draw for this merchant: read what it made
            prefix = await connection.fetchval(
                "SELECT prefix FROM invoice_number_prefixes WHERE merchant_id = $1", merchant_id
            )
        if prefix is not None:
            return str(prefix)
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
