"""Which merchant a Stripe customer, payment intent or charge belongs to.

A Stripe event names Stripe's ids, not our merchant; a webhook handler asks here first and then
reads only that merchant's rows (on Citus: one shard; ``stripe_owners`` itself is a reference
table, on every node). Rows are written when the outbox makes a customer and when a payment is
recorded with its payment intent or charge, in the transaction that records it; an id belongs
to one merchant for good (a customer deleted in Stripe stays its merchant's).
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from service.db.tables import StripeOwner


class Kind(StrEnum):
    CUSTOMER = "customer"
    PAYMENT_INTENT = "payment_intent"
    CHARGE = "charge"


_REMEMBER = (
    "INSERT INTO stripe_owners (stripe_id, merchant_id, kind)"
    " SELECT * FROM unnest({}::text[], {}::uuid[], {}::text[])"
    " ON CONFLICT (stripe_id) DO NOTHING"
)


async def remember(merchant_id: UUID, **ids: str | None) -> None:
    """Note that these Stripe ids (by kind: ``customer=``, ``payment_intent=``, ``charge=``)
    belong to ``merchant_id``; ids already known are left as they are."""
    known = [(str(value), Kind(kind).value) for kind, value in ids.items() if value]
    if not known:
        return
    await StripeOwner.raw(
        _REMEMBER,
        [stripe_id for stripe_id, _ in known],
        [merchant_id] * len(known),
        [kind for _, kind in known],
    )


async def merchant_of(*stripe_ids: str | None) -> UUID | None:
    """The merchant the first known of these Stripe ids belongs to (None: none is ours, or
    not yet recorded)."""
    wanted = [str(stripe_id) for stripe_id in stripe_ids if stripe_id]
    if not wanted:
        return None
    rows = await StripeOwner.raw(
        "SELECT stripe_id, merchant_id FROM stripe_owners WHERE stripe_id = ANY({}::text[])",
        wanted,
    )
    owners = {row["stripe_id"]: row["merchant_id"] for row in rows}
    return next((owners[stripe_id] for stripe_id in wanted if stripe_id in owners), None)
