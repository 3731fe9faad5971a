"""Refunds of succeeded charges, and refunds the card network bounces later."""

from __future__ import annotations

import copy
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import (
    INLINE_LIST_LIMIT,
    Account,
    Obj,
    Params,
    diff,
    merge_metadata,
)
from webhooks.standin.schema import invalid


class Refunds(Account):
    """Refunds of charges; each leaves a balance transaction (``Payments``)."""

    def create_refund(self, params: Params) -> Obj:
        if "charge" in params:
            charge = self.get("charge", params["charge"], param="charge")
        elif "payment_intent" in params:
            intent = self.get("payment_intent", params["payment_intent"], param="payment_intent")
            charge = self.get("charge", intent["latest_charge"] or "", param="payment_intent")
        else:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        return self.refund_charge(
            charge,
            amount=params.get("amount"),
            reason=params.get("reason"),
            metadata=params.get("metadata", {}),
        )

    def refund_charge(
        self,
        charge: Obj,
        *,
        amount: int | None = None,
        reason: str | None = None,
        metadata: Any = None,
    ) -> Obj:
        """Refund (part of) a succeeded charge: refund + negative balance transaction + events."""
        if charge["status"] != "succeeded":
            raise invalid("This charge did not succeed and cannot be refunded.", param="charge")
        # Charged back: the card network has the money; a refund would pay it out twice.
        if any(
            d["charge"] == charge["id"] and d["status"] != "won"
            for d in self.table("dispute").values()
        ):
            raise invalid(
                f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                param="charge",
                code="charge_disputed",
            )
        refundable = charge["amount"] - charge["amount_refunded"]
        if refundable == 0:
            raise invalid(
                f"Charge {charge['id']} has already been refunded.",
                param="charge",
                code="charge_already_refunded",
            )
        amount = refundable if amount is None else amount
        if amount <= 0:
            raise invalid("Refund amount must be positive.", param="amount")
        if amount > refundable:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({refundable})",
                param="amount",
                code="amount_too_large",
            )
        metadata = merge_metadata({}, metadata or {})
        refund_id = objects.new_id("refund")
        txn = self._balance_transaction(
            amount=-amount,
            fee=0,
            currency=charge["currency"],
            source=refund_id,
            type_="refund",
            category="refund",
            description="REFUND FOR CHARGE",
        )
        refund = self._new(
            "refund",
            id=refund_id,
            amount=amount,
            balance_transaction=txn["id"],
            charge=charge["id"],
            currency=charge["currency"],
            destination_details=objects.sub_object(
                "refund",
                "DestinationDetails",
                type="card",
                card=objects.sub_object(
                    "refund", "DestinationDetails.Card", type="refund", reference_status="pending"
                ),
            ),
            metadata=metadata,
            payment_intent=charge["payment_intent"],
            reason=reason,
            status="succeeded",
        )
        before = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._refresh_charge_refunds(charge)
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge, diff(before, charge))
        return refund

    def _refresh_charge_refunds(self, charge: Obj) -> None:
        refunds = [
            r for r in reversed(self.table("refund").values()) if r["charge"] == charge["id"]
        ]
        charge["refunds"] = objects.list_object(
            copy.deepcopy(refunds[:INLINE_LIST_LIMIT]),
            url=f"/v1/charges/{charge['id']}/refunds",
            has_more=len(refunds) > INLINE_LIST_LIMIT,
        )

    def update_refund(self, refund_id: str, params: Params) -> Obj:
        refund = self.get("refund", refund_id)
        metadata = merge_metadata(refund["metadata"], params.get("metadata", {}))
        before = copy.deepcopy(refund)
        refund["metadata"] = metadata
        self._updated("refund.updated", refund, before)
        return refund

    def fail_refund(self, refund_id: str, reason: str = "lost_or_stolen_card") -> Obj:
        """A refund the card network bounced: funds come back, the charge is less refunded."""
        refund = self.get("refund", refund_id)
        if refund["status"] != "succeeded":
            raise invalid(f"Refund {refund_id} is {refund['status']}, not succeeded.")
        charge = self.get("charge", refund["charge"])
        txn = self._balance_transaction(
            amount=refund["amount"],
            fee=0,
            currency=refund["currency"],
            source=refund_id,
            type_="refund_failure",
            category="refund_failure",
            description="REFUND FAILURE",
        )
        before = copy.deepcopy(refund)
        refund.update(status="failed", failure_reason=reason, failure_balance_transaction=txn["id"])
        charge_before = copy.deepcopy(charge)
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        self._refresh_charge_refunds(charge)
        self._updated("refund.updated", refund, before)
        self.emit("refund.failed", refund)
        self.emit("charge.refund.updated", refund, diff(before, refund))
        self._updated("charge.updated", charge, charge_before)
        return refund
