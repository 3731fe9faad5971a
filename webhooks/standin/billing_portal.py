"""The customer portal of the stand-in account: configurations and portal sessions.

A portal session needs a saved configuration, as at Stripe: the one named in the request, or
the account's default — which exists only once someone saved the portal settings in the
dashboard (``Dashboard.save_portal_settings``). Configurations made through the API are never
the default. Without either, the session is refused with Stripe's words.
"""

from __future__ import annotations

import copy
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import Account, Obj, Params, merge_metadata
from webhooks.standin.payment_methods import TEST_CARDS, PaymentMethods
from webhooks.standin.schema import invalid

NO_DEFAULT_CONFIGURATION = (
    "No configuration provided and your test mode default configuration has not been created."
    " Provide a configuration or create your default by saving your customer portal settings"
    " in test mode at https://dashboard.stripe.com/test/settings/billing/portal."
)


class BillingPortal(PaymentMethods, Account):
    """Portal configurations and sessions, and what a customer does in the portal."""

    def create_portal_configuration(self, params: Params, *, is_default: bool = False) -> Obj:
        now = self.now()
        profile = params.get("business_profile") or {}
        configuration = self._new(
            "billing_portal.configuration",
            active=True,
            application=None,
            business_profile=self._overlay(
                "billing_portal.configuration", "BusinessProfile", profile
            ),
            default_return_url=params.get("default_return_url") or None,
            features=self._features(params["features"]),
            is_default=is_default,
            login_page=objects.sub_object(
                "billing_portal.configuration", "LoginPage", enabled=False, url=None
            ),
            metadata=merge_metadata({}, params.get("metadata", {})),
            name=params.get("name") or None,
            updated=now,
        )
        self.emit("billing_portal.configuration.created", configuration)
        return configuration

    def _features(self, wanted: dict[str, Any]) -> Obj:
        features = objects.sub_object("billing_portal.configuration", "Features")
        for name, values in wanted.items():
            path = "Features." + "".join(part.title() for part in name.split("_"))
            features[name] = self._overlay("billing_portal.configuration", path, values)
        return features

    @staticmethod
    def _overlay(owner: str, path: str, values: dict[str, Any]) -> Obj:
        """The sub-object's shape with what the request set (fields of the request that the
        answer does not show are left out)."""
        shape = objects.sub_object(owner, path)
        shape.update({key: value for key, value in values.items() if key in shape})
        return shape

    def list_portal_configurations(self, params: Params) -> Obj:
        items = self.select(
            "billing_portal.configuration",
            params,
            {"active": "active", "is_default": "is_default"},
        )
        return self.page(items, params, "/v1/billing_portal/configurations")

    def create_portal_session(self, params: Params) -> Obj:
        customer_id = params["customer"]
        self._live("customer", customer_id, param="customer")
        if "configuration" in params:
            configuration = self.get(
                "billing_portal.configuration", params["configuration"], param="configuration"
            )
            if not configuration["active"]:
                raise invalid(
                    f"The configuration {configuration['id']} is not active: activate it or"
                    " pass another.",
                    param="configuration",
                )
        else:
            configuration = next(
                (
                    c
                    for c in self.table("billing_portal.configuration").values()
                    if c["is_default"] and c["active"]
                ),
                None,
            )
            if configuration is None:
                raise invalid(NO_DEFAULT_CONFIGURATION)
        return_url = params.get("return_url") or configuration["default_return_url"]
        if not return_url:
            raise invalid(
                "Missing required param: return_url (the configuration has no default_return_url).",
                param="return_url",
                code="parameter_missing",
            )
        session_id = objects.new_id("billing_portal.session")
        session = self._new(
            "billing_portal.session",
            id=session_id,
            configuration=configuration["id"],
            customer=customer_id,
            flow=None,
            locale=params.get("locale"),
            on_behalf_of=None,
            return_url=return_url,
            url=f"{self.base_url}/_standin/portal/{session_id}",
        )
        self.emit("billing_portal.session.created", session)
        return session

    def portal_replace_card(self, session_id: str, *, card: str = "tok_mastercard") -> Obj:
        """In the portal, the customer replaces the card invoices are paid with: the new card
        is attached and made the default, the old one detached."""
        session = self.get("billing_portal.session", session_id)
        if card not in TEST_CARDS:
            raise invalid(f"Unknown test card {card!r}: one of {', '.join(TEST_CARDS)}")
        customer = self._live("customer", session["customer"])
        old = (customer.get("invoice_settings") or {}).get("default_payment_method")
        method = self.new_card(TEST_CARDS[card])
        self.attach_payment_method(method["id"], {"customer": customer["id"]})
        before = copy.deepcopy(customer)
        customer["invoice_settings"] = {
            **customer["invoice_settings"],
            "default_payment_method": method["id"],
        }
        self._updated("customer.updated", customer, before)
        if old is not None:
            self.detach_payment_method(old)
        return customer
