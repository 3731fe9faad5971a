"""Payment terms and the collection they lead to: is an invoice charged, or sent?

Basic and advanced merchants (and custom ones on ``automatic`` terms) are charged once a card
is saved for their invoices; until then their invoices are sent: Stripe's hosted invoice page
is the payment link (it also offers ways to pay that cannot be saved, such as WeChat Pay), due
``days_until_due`` days after issue (the merchant's terms, else the plan's). A negotiated
contract may pay by bank transfer: ``send_invoice`` terms, every invoice sent with its own days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from plans.catalog import PlanVersion
from service.audit import log as audit
from service.db.engine import transaction_connection
from service.errors import InvalidInput
from service.payments.schemas import PaymentTermsIn
from service.tenancy.principal import Actor

AUTOMATIC = "automatic"
"""Terms: charged once a way to pay is saved, sent until then."""
CHARGE = "charge_automatically"
SEND = "send_invoice"


@dataclass(frozen=True, slots=True)
class Collection:
    """How one invoice is collected."""

    method: str
    """Stripe's ``collection_method``: ``charge_automatically`` or ``send_invoice``."""
    days_until_due: int | None
    """For a sent invoice: days after issue it is due."""
    awaits_payment_method: bool
    """Sent only because no way to pay is saved: paid with the first one saved."""

    def due_at(self, issued_at: datetime) -> datetime | None:
        """The due date on our clock (``issued_at`` is the merchant's time of issue)."""
        if self.days_until_due is None:
            return None
        return issued_at + timedelta(days=self.days_until_due)


def collection_for(
    *,
    invoice_collection: str,
    merchant_days: int | None,
    plan: PlanVersion,
    default_payment_method_id: str | None,
) -> Collection:
    """The collection of an invoice, from the merchant's terms and what is on file."""
    days = merchant_days or plan.days_until_due
    if invoice_collection == SEND:
        return Collection(method=SEND, days_until_due=days, awaits_payment_method=False)
    if default_payment_method_id is not None:
        return Collection(method=CHARGE, days_until_due=None, awaits_payment_method=False)
    return Collection(method=SEND, days_until_due=days, awaits_payment_method=True)


_SET = """
UPDATE merchants SET invoice_collection = $2, days_until_due = $3
WHERE id = $1
RETURNING invoice_collection, days_until_due
"""


async def set_terms(
    merchant_id: UUID, terms: PaymentTermsIn, *, plan: PlanVersion, actor: Actor
) -> None:
    """Record the merchant's payment terms (in the caller's transaction); they decide how each
    invoice pushed from now on is collected."""
    if terms.collection == SEND and not plan.allows_overrides:
        raise InvalidInput(
            f"paying every invoice by sent invoice (bank transfer) is a term of negotiated"
            f" contracts; plan {plan.code} is charged to the card the merchant saves, and its"
            " invoices are sent only until one is saved: leave collection as automatic",
            field="payment_terms.collection",
        )
    await transaction_connection().fetchrow(
        _SET, merchant_id, terms.collection, terms.days_until_due
    )
    await audit.record(
        actor,
        merchant_id=merchant_id,
        entity="merchant",
        entity_id=merchant_id,
        action="payment_terms",
        changes={"collection": terms.collection, "days_until_due": terms.days_until_due},
    )
