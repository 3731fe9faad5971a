"""Customers of the stand-in account: create, update (Stripe's metadata rules), delete."""

from __future__ import annotations

import copy
import secrets
import string
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import (
    Account,
    Obj,
    Params,
    merge_metadata,
)
from webhooks.standin.schema import invalid


class Customers(Account):
    """Customers: the account's payers, with Stripe's rules for prefixes and metadata."""

    _CUSTOMER_FIELDS = (
        "balance",
        "description",
        "email",
        "name",
        "phone",
        "preferred_locales",
        "tax_exempt",
        "business_name",
        "individual_name",
    )

    def create_customer(self, params: Params) -> Obj:
        values = self._customer_values(params, {})
        prefix = params.get("invoice_prefix") or "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)
        )
        defaults: dict[str, Any] = {
            "balance": 0,
            "delinquent": False,
            "invoice_prefix": prefix,
            "invoice_settings": objects.sub_object("customer", "InvoiceSettings"),
            "metadata": {},
            "next_invoice_sequence": 1,
            "preferred_locales": [],
            "tax_exempt": "none",
        }
        customer = self._new("customer", **{**defaults, **values})
        self.emit("customer.created", customer)
        return customer

    def _customer_values(self, params: Params, customer: Obj) -> dict[str, Any]:
        values: dict[str, Any] = {k: params[k] for k in self._CUSTOMER_FIELDS if k in params}
        for key in ("description", "email", "name", "phone"):
            if values.get(key) == "":
                values[key] = None
        if "metadata" in params:
            values["metadata"] = merge_metadata(customer.get("metadata"), params["metadata"])
        if "invoice_prefix" in params:
            prefix = params["invoice_prefix"]
            if not (3 <= len(prefix) <= 12 and prefix.isalnum() and prefix.upper() == prefix):
                raise invalid(
                    "Invoice prefix must be 3-12 uppercase letters or numbers.",
                    param="invoice_prefix",
                )
            values["invoice_prefix"] = prefix
        if isinstance(params.get("address"), dict):
            values["address"] = objects.sub_object("customer", "Address", **params["address"])
        elif params.get("address") == "":
            values["address"] = None
        if isinstance(params.get("invoice_settings"), dict):
            settings = dict(customer.get("invoice_settings") or {})
            wanted = params["invoice_settings"]
            method_id = wanted.get("default_payment_method")
            if method_id:
                # Only a card this customer has saved can be the one its invoices are paid with.
                self.attached_method(  # type: ignore[attr-defined]
                    method_id,
                    customer.get("id", ""),
                    param="invoice_settings[default_payment_method]",
                )
            settings.update(
                {
                    k: v or None
                    for k, v in wanted.items()
                    if k in ("default_payment_method", "footer")
                }
            )
            values["invoice_settings"] = objects.sub_object(
                "customer", "InvoiceSettings", **settings
            )
        return values

    def update_customer(self, customer_id: str, params: Params) -> Obj:
        customer = self._live("customer", customer_id)
        values = self._customer_values(params, customer)
        before = copy.deepcopy(customer)
        customer.update(values)
        self._updated("customer.updated", customer, before)
        return customer

    def delete_customer(self, customer_id: str) -> Obj:
        customer = self._live("customer", customer_id)
        snapshot = copy.deepcopy(customer)
        self.table("customer")[customer_id] = objects.deleted_object("customer", customer_id)
        self.emit("customer.deleted", snapshot)
        return self.table("customer")[customer_id]
