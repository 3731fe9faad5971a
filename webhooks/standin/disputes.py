"""Disputes (chargebacks) of charges: opened, answered, won or lost."""

from __future__ import annotations

import copy

from webhooks.standin import objects
from webhooks.standin.account import (
    Account,
    Obj,
    Params,
    merge_metadata,
)
from webhooks.standin.schema import invalid

DISPUTE_FEE_MINOR = 1500


class Disputes(Account):
    """Disputes of charges and their balance transactions (``Payments``)."""

    def open_dispute(
        self, charge_id: str, *, amount: int | None = None, reason: str = "fraudulent"
    ) -> Obj:
        charge = self.get("charge", charge_id, param="charge")
        if charge["status"] != "succeeded":
            raise invalid("Only a succeeded charge can be disputed.", param="charge")
        if charge["disputed"]:
            raise invalid("This charge is already disputed.", param="charge")
        amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
        if not 0 < amount <= charge["amount"] - charge["amount_refunded"]:
            raise invalid(
                "The dispute amount must be positive and within the charge.", param="amount"
            )
        dispute_id = objects.new_id("dispute")
        txn = self._balance_transaction(
            amount=-amount,
            fee=DISPUTE_FEE_MINOR,
            currency=charge["currency"],
            source=dispute_id,
            type_="adjustment",
            category="dispute",
            description=f"Chargeback withdrawal for {charge_id}",
        )
        now = self.now()
        dispute = self._new(
            "dispute",
            id=dispute_id,
            amount=amount,
            balance_transactions=[copy.deepcopy(txn)],
            charge=charge_id,
            currency=charge["currency"],
            enhanced_eligibility_types=[],
            evidence_details=objects.sub_object(
                "dispute", "EvidenceDetails", due_by=now + 7 * 86400, submission_method="manual"
            ),
            is_charge_refundable=False,
            metadata={},
            payment_intent=charge["payment_intent"],
            reason=reason,
            status="needs_response",
        )
        before = copy.deepcopy(charge)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute)
        self._updated("charge.updated", charge, before)
        return dispute

    def close_dispute(self, dispute_id: str, *, won: bool = False) -> Obj:
        """Close a dispute: lost (the merchant accepts, ``POST .../close``) or won."""
        dispute = self.get("dispute", dispute_id)
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"This dispute is already closed ({dispute['status']}).")
        before = copy.deepcopy(dispute)
        if won:
            txn = self._balance_transaction(
                amount=dispute["amount"],
                fee=-DISPUTE_FEE_MINOR,
                currency=dispute["currency"],
                source=dispute_id,
                type_="adjustment",
                category="dispute_reversal",
                description=f"Chargeback reversal for {dispute['charge']}",
            )
            dispute["balance_transactions"].append(copy.deepcopy(txn))
        dispute["status"] = "won" if won else "lost"
        self._updated("charge.dispute.updated", dispute, before)
        self.emit("charge.dispute.closed", dispute)
        return dispute

    def update_dispute(self, dispute_id: str, params: Params) -> Obj:
        dispute = self.get("dispute", dispute_id)
        before = copy.deepcopy(dispute)
        if "metadata" in params:
            dispute["metadata"] = merge_metadata(dispute["metadata"], params["metadata"])
        if params.get("submit"):
            dispute["status"] = "under_review"
            dispute["evidence_details"]["has_evidence"] = True
            dispute["evidence_details"]["submission_count"] += 1
        self._updated("charge.dispute.updated", dispute, before)
        return dispute
