"""Money coming in: payment intents, their charges and balance transactions (with fees).

Money rule (documented, not Stripe's per-country price list): a successful card charge costs
2.9 % of the amount, rounded half-up to the minor unit, plus 30 minor units, whatever the currency.
A refund returns no fee. A dispute debits the disputed amount plus a 1,500 minor-unit fee; a won
dispute credits both back.
"""

from __future__ import annotations

import copy
import secrets
from decimal import ROUND_HALF_UP, Decimal

from webhooks.standin import objects
from webhooks.standin.account import (
    Account,
    Obj,
    Params,
    merge_metadata,
)

FEE_RATE = Decimal("0.029")
FEE_FIXED_MINOR = 30
AVAILABLE_AFTER_SECONDS = 2 * 86400
MAX_AMOUNT_MINOR = 99_999_999
"""Stripe charges at most eight digits of minor units (99,999,999: $999,999.99)."""


def stripe_fee(amount_minor: int) -> int:
    """The processing fee of one successful charge, in minor units (see module docstring)."""
    percent = (Decimal(amount_minor) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(percent) + FEE_FIXED_MINOR


class Payments(Account):
    """Payment intents, charges and the balance transactions money movements leave."""

    def _create_payment(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        description: str,
        succeeded: bool,
        payment_method: Obj,
    ) -> tuple[Obj, Obj]:
        """A PaymentIntent and its Charge of ``payment_method`` (+ balance transaction when it
        succeeds)."""
        intent_id = objects.new_id("payment_intent")
        charge_id = objects.new_id("charge")
        kind = payment_method["type"]
        if kind == "card":
            saved = payment_method["card"]
            method_details = objects.sub_object(
                "charge",
                "PaymentMethodDetails.Card",
                brand=saved["brand"],
                country=saved["country"],
                exp_month=saved["exp_month"],
                exp_year=saved["exp_year"],
                fingerprint=saved["fingerprint"],
                funding=saved["funding"],
                last4=saved["last4"],
                network=saved["brand"],
            )
        else:
            method_details = objects.sub_object(
                "charge", "PaymentMethodDetails.WechatPay", transaction_id=charge_id[-16:]
            )
        details = objects.sub_object(
            "charge", "PaymentMethodDetails", type=kind, **{kind: method_details}
        )
        outcome = objects.sub_object(
            "charge",
            "Outcome",
            network_status="approved_by_network" if succeeded else "declined_by_network",
            reason=None if succeeded else "generic_decline",
            risk_level="normal",
            risk_score=20,
            seller_message="Payment complete." if succeeded else "The bank declined the payment.",
            type="authorized" if succeeded else "issuer_declined",
        )
        txn = None
        if succeeded:
            fee = stripe_fee(amount)
            txn = self._balance_transaction(
                amount=amount,
                fee=fee,
                currency=currency,
                source=charge_id,
                type_="charge",
                category="charge",
                description=description,
            )
        charge = self._new(
            "charge",
            id=charge_id,
            amount=amount,
            amount_captured=amount if succeeded else 0,
            balance_transaction=txn["id"] if txn else None,
            billing_details=objects.sub_object("charge", "BillingDetails"),
            calculated_statement_descriptor="KEFU",
            captured=succeeded,
            currency=currency,
            customer=customer,
            description=description,
            failure_code=None if succeeded else "card_declined",
            failure_message=None if succeeded else "Your card was declined.",
            fraud_details=objects.sub_object("charge", "FraudDetails"),
            metadata={},
            outcome=outcome,
            paid=succeeded,
            payment_intent=intent_id,
            payment_method=payment_method["id"],
            payment_method_details=details,
            receipt_url=f"{self.base_url}/_standin/hosted/{charge_id}" if succeeded else None,
            refunds=objects.list_object([], url=f"/v1/charges/{charge_id}/refunds", has_more=False),
            status="succeeded" if succeeded else "failed",
        )
        last_error = None
        if not succeeded:
            last_error = objects.sub_object(
                "payment_intent",
                "LastPaymentError",
                charge=charge_id,
                code="card_declined",
                decline_code="generic_decline",
                message="Your card was declined.",
                type="card_error",
            )
        intent = self._new(
            "payment_intent",
            id=intent_id,
            amount=amount,
            amount_received=amount if succeeded else 0,
            capture_method="automatic",
            client_secret=f"{intent_id}_secret_{secrets.token_hex(8)}",
            confirmation_method="automatic",
            currency=currency,
            customer=customer,
            description=description,
            last_payment_error=last_error,
            latest_charge=charge_id,
            metadata={},
            payment_method=payment_method["id"],
            payment_method_types=[kind],
            status="succeeded" if succeeded else "requires_payment_method",
        )
        self.emit("payment_intent.created", intent)
        if succeeded:
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", intent)
        else:
            self.emit("charge.failed", charge)
            self.emit("payment_intent.payment_failed", intent)
        return intent, charge

    def _balance_transaction(
        self,
        *,
        amount: int,
        fee: int,
        currency: str,
        source: str,
        type_: str,
        category: str,
        description: str | None,
    ) -> Obj:
        now = self.now()
        fee_details = []
        if fee:
            fee_details.append(
                objects.sub_object(
                    "balance_transaction",
                    "FeeDetail",
                    amount=fee,
                    currency=currency,
                    description="Stripe processing fees",
                    type="stripe_fee",
                )
            )
        return self._new(
            "balance_transaction",
            amount=amount,
            available_on=now + AVAILABLE_AFTER_SECONDS,
            balance_type="payments",
            currency=currency,
            description=description,
            fee=fee,
            fee_details=fee_details,
            net=amount - fee,
            reporting_category=category,
            source=source,
            status="available",
            type=type_,
        )

    def update_charge(self, charge_id: str, params: Params) -> Obj:
        charge = self.get("charge", charge_id)
        before = copy.deepcopy(charge)
        if "metadata" in params:
            charge["metadata"] = merge_metadata(charge["metadata"], params["metadata"])
        if "description" in params:
            charge["description"] = params["description"] or None
        self._updated("charge.updated", charge, before)
        return charge
