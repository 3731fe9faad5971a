"""Products and prices of the stand-in account; prices are immutable but for a few fields."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import (
    Account,
    Obj,
    Params,
    currency_code,
    decimal_text,
    merge_metadata,
)
from webhooks.standin.schema import invalid


class Catalog(Account):
    """Products and prices (a price's amount never changes: the dashboard replaces it)."""

    _PRODUCT_FIELDS = (
        "active",
        "description",
        "images",
        "name",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
    )

    def create_product(self, params: Params) -> Obj:
        product_id = params.get("id") or objects.new_id("product")
        if product_id in self.table("product"):
            raise invalid(
                f"Product already exists: {product_id}", param="id", code="resource_already_exists"
            )
        values = {k: params[k] for k in self._PRODUCT_FIELDS if k in params}
        price_data = params.get("default_price_data")
        if price_data is not None:
            self._check_price_amount(price_data, "default_price_data")
        now = self.now()
        product = self._new(
            "product",
            id=product_id,
            active=params.get("active", True),
            images=params.get("images", []),
            marketing_features=[],
            metadata=merge_metadata({}, params.get("metadata", {})),
            type="service",
            updated=now,
            **{k: v for k, v in values.items() if k not in ("active", "images")},
        )
        self.emit("product.created", product)
        if price_data is not None:
            price = self._create_price_for(product, dict(price_data))
            before = copy.deepcopy(product)
            product["default_price"] = price["id"]
            self._updated("product.updated", product, before)
        return product

    def update_product(self, product_id: str, params: Params) -> Obj:
        product = self._live("product", product_id)
        values: dict[str, Any] = {k: params[k] for k in self._PRODUCT_FIELDS if k in params}
        if "metadata" in params:
            values["metadata"] = merge_metadata(product["metadata"], params["metadata"])
        if "default_price" in params:
            price_id = params["default_price"]
            if price_id:
                price = self.get("price", price_id, param="default_price")
                if price["product"] != product_id:
                    raise invalid(
                        "The default price must belong to this product.", param="default_price"
                    )
            values["default_price"] = price_id or None
        before = copy.deepcopy(product)
        product.update(values)
        if product != before:
            product["updated"] = self.now()
        self._updated("product.updated", product, before)
        return product

    def delete_product(self, product_id: str) -> Obj:
        product = self._live("product", product_id)
        if any(p["product"] == product_id for p in self.table("price").values()):
            raise invalid(
                "This product cannot be deleted because it has one or more user-created prices.",
                param="id",
            )
        snapshot = copy.deepcopy(product)
        self.table("product")[product_id] = objects.deleted_object("product", product_id)
        self.emit("product.deleted", snapshot)
        return self.table("product")[product_id]

    def list_products(self, params: Params) -> Obj:
        items = self.select("product", params, {"active": "active", "shippable": "shippable"})
        if "ids" in params:
            items = [p for p in items if p["id"] in params["ids"]]
        return self.page(items, params, "/v1/products")

    @staticmethod
    def _check_price_amount(data: Params, where: str) -> None:
        has_amount = "unit_amount" in data or "unit_amount_decimal" in data
        if data.get("billing_scheme") == "tiered":
            if not data.get("tiers"):
                raise invalid("Tiered prices need tiers.", param=f"{where}[tiers]")
        elif not has_amount and "custom_unit_amount" not in data:
            raise invalid(
                "Missing required param: unit_amount.",
                param=f"{where}[unit_amount]",
                code="parameter_missing",
            )
        if "unit_amount" in data and "unit_amount_decimal" in data:
            raise invalid(
                "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                param=f"{where}[unit_amount_decimal]",
            )
        if data.get("unit_amount", 0) < 0:
            raise invalid("Invalid unit_amount: must be 0 or more.", param=f"{where}[unit_amount]")

    def create_price(self, params: Params) -> Obj:
        params = dict(params)
        self._check_price_amount(params, "price")
        if "product" in params:
            product = self._live("product", params["product"], param="product")
        elif "product_data" in params:
            product = None
        else:
            raise invalid(
                "Missing required param: product.", param="product", code="parameter_missing"
            )
        self._check_lookup_key(params)
        if product is None:
            data = params.pop("product_data")
            product = self.create_product({k: v for k, v in data.items() if k != "tax_code"})
        params.pop("product", None)
        return self._create_price_for(product, params)

    def _check_lookup_key(self, params: Params, price_id: str | None = None) -> None:
        key = params.get("lookup_key")
        if not key or params.get("transfer_lookup_key"):
            return
        for other in self.table("price").values():
            if other["lookup_key"] == key and other["id"] != price_id:
                raise invalid(
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    param="lookup_key",
                )

    def _create_price_for(self, product: Obj, params: Params) -> Obj:
        if params.get("lookup_key") and params.get("transfer_lookup_key"):
            for other in self.table("price").values():
                if other["lookup_key"] == params["lookup_key"]:
                    before = copy.deepcopy(other)
                    other["lookup_key"] = None
                    self._updated("price.updated", other, before)
        recurring = params.get("recurring")
        unit_amount = params.get("unit_amount")
        unit_decimal = params.get("unit_amount_decimal")
        if unit_amount is not None:
            unit_decimal = Decimal(unit_amount)
        elif unit_decimal is not None and unit_decimal == unit_decimal.to_integral_value():
            unit_amount = int(unit_decimal)
        tiers = [
            objects.sub_object(
                "price",
                "Tier",
                flat_amount=t.get("flat_amount"),
                flat_amount_decimal=decimal_text(
                    t.get("flat_amount_decimal", t.get("flat_amount"))
                ),
                unit_amount=t.get("unit_amount"),
                unit_amount_decimal=decimal_text(
                    t.get("unit_amount_decimal", t.get("unit_amount"))
                ),
                up_to=None if t["up_to"] == "inf" else t["up_to"],
            )
            for t in params.get("tiers", [])
        ]
        price = self._new(
            "price",
            active=params.get("active", True),
            billing_scheme=params.get("billing_scheme", "per_unit"),
            currency=currency_code(params["currency"]),
            lookup_key=params.get("lookup_key"),
            metadata=merge_metadata({}, params.get("metadata", {})),
            nickname=params.get("nickname"),
            product=product["id"],
            recurring=None
            if recurring is None
            else objects.sub_object(
                "price",
                "Recurring",
                interval=recurring["interval"],
                interval_count=recurring.get("interval_count", 1),
                meter=recurring.get("meter"),
                trial_period_days=recurring.get("trial_period_days"),
                usage_type=recurring.get("usage_type", "licensed"),
            ),
            tax_behavior=params.get("tax_behavior", "unspecified"),
            tiers=tiers or None,
            tiers_mode=params.get("tiers_mode"),
            type="recurring" if recurring else "one_time",
            unit_amount=unit_amount,
            unit_amount_decimal=decimal_text(unit_decimal),
        )
        self.emit("price.created", price)
        return price

    def update_price(self, price_id: str, params: Params) -> Obj:
        price = self.get("price", price_id)
        self._check_lookup_key(params, price_id)
        values: dict[str, Any] = {
            k: params[k] or None for k in ("lookup_key", "nickname") if k in params
        }
        for key in ("active", "tax_behavior"):
            if key in params:
                values[key] = params[key]
        if "metadata" in params:
            values["metadata"] = merge_metadata(price["metadata"], params["metadata"])
        if params.get("lookup_key") and params.get("transfer_lookup_key"):
            for other in self.table("price").values():
                if other["lookup_key"] == params["lookup_key"] and other["id"] != price_id:
                    other_before = copy.deepcopy(other)
                    other["lookup_key"] = None
                    self._updated("price.updated", other, other_before)
        before = copy.deepcopy(price)
        price.update(values)
        self._updated("price.updated", price, before)
        return price

    def replace_price(self, price_id: str, unit_amount: int) -> Obj:
        """What the dashboard does to "change" a price: a new price, the old one archived."""
        old = self.get("price", price_id)
        params: dict[str, Any] = {
            "currency": old["currency"],
            "unit_amount": unit_amount,
            "metadata": dict(old["metadata"]),
            "tax_behavior": old["tax_behavior"],
        }
        for key in ("nickname", "lookup_key"):
            if old[key]:
                params[key] = old[key]
        params["transfer_lookup_key"] = bool(old["lookup_key"])
        if old["recurring"]:
            params["recurring"] = {
                key: old["recurring"][key] for key in ("interval", "interval_count", "usage_type")
            }
        self._check_price_amount(params, "price")
        product = self.get("product", old["product"])
        new = self._create_price_for(product, params)
        if product["default_price"] == price_id:
            self.update_product(product["id"], {"default_price": new["id"]})
        self.update_price(price_id, {"active": False})
        return new

    def list_prices(self, params: Params) -> Obj:
        items = self.select(
            "price",
            params,
            {"active": "active", "product": "product", "type": "type", "currency": "currency"},
        )
        if "lookup_keys" in params:
            items = [p for p in items if p["lookup_key"] in params["lookup_keys"]]
        return self.page(items, params, "/v1/prices")
