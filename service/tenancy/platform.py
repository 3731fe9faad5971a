"""The platform tenant: the reserved merchant that owns rows belonging to no merchant.

Citus needs a shard key on every tenant row, so operator-owned rows (sessions, webhook
endpoints, catalog pushes, operator audit entries) are stored under this fixed id instead of
NULL (DECISIONS section 2). It is created by a migration and is never a customer: it has no
subscription, no Stripe customer, and merchant lookups answer 404 for it.
"""

from __future__ import annotations

from uuid import UUID

PLATFORM_MERCHANT_ID = UUID("00000000-0000-0000-0000-000000000001")


def is_platform(merchant_id: UUID | None) -> bool:
    return merchant_id == PLATFORM_MERCHANT_ID
