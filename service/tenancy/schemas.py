"""Request and response bodies for merchants and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from service.db.tables import ApiKey, Merchant, PaymentMethodRow
from service.payments.schemas import PaymentMethodOut, PaymentTermsOut
from service.wire import CurrencyCode, Email, Input, Name, Output, TimezoneName, pattern

ScopeName = Annotated[
    str,
    pattern(
        r"^[a-z:]+$",
        "a scope name such as usage:write, billing:read or billing:write",
        examples=["usage:write"],
    ),
]


class MerchantCreate(Input):
    name: Name
    contact_email: Email
    timezone: TimezoneName = "Asia/Shanghai"
    currency: CurrencyCode = "CNY"


class MerchantUpdate(Input):
    """Only the fields sent change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    contact_email: Email | msgspec.UnsetType = msgspec.UNSET
    timezone: TimezoneName | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, str]:
        return {
            field: value
            for field in self.__struct_fields__
            if (value := getattr(self, field)) is not msgspec.UNSET
        }


class MerchantOut(Output):
    id: UUID
    name: str
    contact_email: str
    timezone: str
    currency: str
    status: str
    created_at: datetime
    can_be_charged: bool = False
    """A way to pay is saved for its invoices: they are charged to it (unless its terms send
    every invoice). False: invoices are sent to it, each with a payment link."""
    default_payment_method: PaymentMethodOut | None = None
    """The card its invoices are charged to, as Stripe last said."""
    payment_terms: PaymentTermsOut = msgspec.field(
        default_factory=lambda: PaymentTermsOut(collection="automatic", days_until_due=None)
    )
    """(Answers stored before payment terms existed replay with the default ones.)"""

    @classmethod
    def from_row(cls, row: Merchant, method: PaymentMethodRow | None = None) -> MerchantOut:
        method_id = row.default_payment_method_id
        return cls(
            id=row.id,
            name=row.name,
            contact_email=row.contact_email,
            timezone=row.timezone,
            currency=row.currency,
            status=row.status,
            created_at=row.created_at,
            can_be_charged=method_id is not None,
            default_payment_method=PaymentMethodOut.from_row(method_id, method)
            if method_id is not None
            else None,
            payment_terms=PaymentTermsOut(
                collection=row.invoice_collection, days_until_due=row.days_until_due
            ),
        )


class ApiKeyCreate(Input):
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    scopes: list[ScopeName] | None = None
    """Defaults to every scope of the new key's role that the calling key holds. A key never
    issues a scope it lacks, nor an operator key from a merchant key (403, audited)."""
    role: Annotated[str, msgspec.Meta(pattern="^(merchant|operator)$")] | None = None
    """Operators only: ``operator`` mints an operator key, ``merchant`` one for ``merchant_id``."""
    merchant_id: UUID | None = None


class ApiKeyOut(Output):
    id: UUID
    name: str
    prefix: str
    role: str
    merchant_id: UUID | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> ApiKeyOut:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            role=row.role,
            merchant_id=row.merchant_id,
            scopes=list(row.scopes),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class ApiKeyIssuedOut(ApiKeyOut):
    key: str
    """The key itself. It is shown this once and never again: store it now."""
