"""Who is calling: the API key's identity, role, merchant and scopes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class Role(StrEnum):
    MERCHANT = "merchant"
    OPERATOR = "operator"


class KeyScope(StrEnum):
    USAGE_WRITE = "usage:write"
    BILLING_READ = "billing:read"
    BILLING_WRITE = "billing:write"
    SIGNUP = "signup"
    FINANCE_READ = "finance:read"
    SUPPORT_READ = "support:read"
    """Support staff: read one named merchant's subscription, usage and upcoming invoice
    (``?merchant_id=``) and the support view; every such read is audited."""


MERCHANT_SCOPES = frozenset({KeyScope.USAGE_WRITE, KeyScope.BILLING_READ, KeyScope.BILLING_WRITE})
OPERATOR_SCOPES = frozenset(KeyScope)
LEAST_SCOPES: dict[Role, tuple[KeyScope, ...]] = {
    Role.MERCHANT: (KeyScope.BILLING_READ,),
    Role.OPERATOR: (KeyScope.BILLING_READ,),
}
"""What ``billing keys create`` grants when no scope is asked for: reading, nothing more."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: UUID
    role: Role
    merchant_id: UUID | None
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, as the audit log and event histories record it."""

    key_id: UUID | None
    role: str
    request_id: str = ""

    @classmethod
    def of(cls, principal: Principal, request_id: str = "") -> Actor:
        return cls(key_id=principal.key_id, role=principal.role.value, request_id=request_id)


SYSTEM_ACTOR = Actor(key_id=None, role="system")
COMMAND_LINE_ACTOR = Actor(key_id=None, role="command_line")
"""A person at the ``billing`` command (database access: the root of trust), no API key."""
