"""Payment methods of the stand-in account: cards made from Stripe's test tokens, attached to a
customer and detached, and the customer's invoice default.

Stripe refuses card numbers sent to its API; cards come from its test tokens (``tok_visa``,
``tok_mastercard``, ``tok_chargeCustomerFail``: attaches, then every charge of it is
declined). Detaching the card a customer pays invoices with clears that default, as at Stripe
(``customer.updated``, then ``payment_method.detached``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

from webhooks.standin import objects
from webhooks.standin.account import Account, Obj, Params, merge_metadata, no_such
from webhooks.standin.schema import invalid


@dataclass(frozen=True)
class TokenCard:
    brand: str
    last4: str
    funding: str = "credit"
    country: str = "US"
    declines_charges: bool = False
    """Attaching succeeds; every charge of it is declined (``card_declined``)."""


TEST_CARDS = {
    "tok_visa": TokenCard("visa", "4242"),
    "tok_mastercard": TokenCard("mastercard", "4444"),
    "tok_chargeCustomerFail": TokenCard("visa", "0341", declines_charges=True),
}
"""Stripe's test tokens this stand-in knows (the cards they stand for)."""


class PaymentMethods(Account):
    """Payment methods and their attachment to customers."""

    def create_payment_method(self, params: Params) -> Obj:
        if params.get("type") != "card":
            raise invalid(
                "The stand-in makes payment methods of type card only (card[token]=tok_visa).",
                param="type",
            )
        card = params.get("card")
        token = card.get("token") if isinstance(card, dict) else None
        if token is None:
            raise invalid(
                "Sending card numbers directly to the Stripe API is unsafe: pass a test token"
                " as card[token] (tok_visa, tok_mastercard, tok_chargeCustomerFail).",
                param="card",
            )
        if token not in TEST_CARDS:
            raise no_such("token", token, param="card[token]")
        method = self.new_card(TEST_CARDS[token])
        if "metadata" in params:
            method["metadata"] = merge_metadata({}, params["metadata"])
        return method

    def new_card(self, card: TokenCard, *, customer: str | None = None) -> Obj:
        """A card payment method (attached to ``customer`` without an event: the caller
        announces it)."""
        details = objects.sub_object(
            "payment_method",
            "Card",
            brand=card.brand,
            display_brand=card.brand,
            country=card.country,
            exp_month=12,
            exp_year=2034,
            fingerprint=hashlib.sha256(f"{card.brand}{card.last4}".encode()).hexdigest()[:16],
            funding=card.funding,
            last4=card.last4,
        )
        method = self._new(
            "payment_method",
            allow_redisplay="unspecified",
            billing_details=objects.sub_object("payment_method", "BillingDetails"),
            card=details,
            customer=customer,
            metadata={},
            type="card",
        )
        if card.declines_charges:
            self.declining_payment_methods.add(method["id"])
        return method

    def new_one_off_method(self, kind: str) -> Obj:
        """A payment method used once and not saved (WeChat Pay on the hosted invoice page)."""
        if kind == "card":
            return self.new_card(TEST_CARDS["tok_visa"])
        if kind != "wechat_pay":
            raise invalid(
                f"The stand-in's hosted invoice page takes card or wechat_pay, not {kind}"
            )
        return self._new(
            "payment_method",
            allow_redisplay="unspecified",
            billing_details=objects.sub_object("payment_method", "BillingDetails"),
            customer=None,
            metadata={},
            type="wechat_pay",
            wechat_pay=objects.sub_object("payment_method", "WechatPay"),
        )

    def attach_payment_method(self, method_id: str, params: Params) -> Obj:
        method = self.get("payment_method", method_id)
        customer_id = params["customer"]
        self._live("customer", customer_id, param="customer")
        if method["customer"] == customer_id:
            return method
        if method["customer"] is not None:
            raise invalid(
                "The payment method you provided has already been attached to a customer.",
                param="payment_method",
            )
        method["customer"] = customer_id
        self.emit("payment_method.attached", method)
        return method

    def detach_payment_method(self, method_id: str) -> Obj:
        method = self.get("payment_method", method_id)
        customer_id = method["customer"]
        if customer_id is None:
            raise invalid(
                "The payment method you provided is not attached to a customer so detachment"
                " is impossible.",
                param="payment_method",
            )
        customer = self.table("customer").get(customer_id)
        settings = (customer or {}).get("invoice_settings") or {}
        if customer is not None and settings.get("default_payment_method") == method_id:
            before = copy.deepcopy(customer)
            customer["invoice_settings"] = {**settings, "default_payment_method": None}
            self._updated("customer.updated", customer, before)
        method["customer"] = None
        self.emit("payment_method.detached", method, {"customer": customer_id})
        return method

    def list_payment_methods(self, params: Params) -> Obj:
        items = self.select("payment_method", params, {"customer": "customer", "type": "type"})
        if "customer" not in params:
            items = [m for m in items if m["customer"] is not None]
        return self.page(items, params, "/v1/payment_methods")

    def attached_method(self, method_id: str, customer_id: str, *, param: str) -> Obj:
        """A payment method that belongs to ``customer_id`` (Stripe's refusal otherwise)."""
        method = self.table("payment_method").get(method_id)
        if method is None:
            raise no_such("PaymentMethod", method_id, param=param)
        if method["customer"] != customer_id:
            raise invalid(
                f"The customer does not have a payment method with the ID {method_id}. The"
                " payment method must be attached to the customer.",
                param=param,
                code="resource_missing",
            )
        return method
