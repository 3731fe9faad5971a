"""The stand-in's in-memory Stripe account: objects, their state machines, balance and events.

Objects are kept in their Stripe JSON form (built by ``objects.build``) and mutated in place; every
state change records an Event whose ``data.object`` is a snapshot. Operations check everything
before they change anything, so a rejected call leaves no trace (a declined payment is recorded,
as at Stripe). Callers hold ``Store.lock`` around a whole request (the HTTP server does); the
lock is re-entrant.

Money rule (documented, not Stripe's per-country price list): a successful card charge costs
2.9 % of the amount, rounded half-up to the minor unit, plus 30 minor units, whatever the currency.
A refund returns no fee. A dispute debits the disputed amount plus a 1,500 minor-unit fee; a won
dispute credits both back.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stripe._api_version import _ApiVersion

from webhooks.standin import objects, sdk_types
from webhooks.standin.schema import StripeError, invalid

API_VERSION = _ApiVersion.CURRENT
FEE_RATE = Decimal("0.029")
FEE_FIXED_MINOR = 30
DISPUTE_FEE_MINOR = 1500
AVAILABLE_AFTER_SECONDS = 2 * 86400
RETRY_AFTER_FAILURE_SECONDS = 3 * 86400
INLINE_LIST_LIMIT = 10  # Stripe embeds at most 10 lines in an invoice or credit note

Obj = dict[str, Any]
Params = dict[str, Any]

# Object name for each id prefix, to resolve ``expand`` and ids of unknown kind.
_KIND_BY_PREFIX = {prefix: name for name, prefix in objects.ID_PREFIXES.items()}


def stripe_fee(amount_minor: int) -> int:
    """The processing fee of one successful charge, in minor units (see module docstring)."""
    percent = (Decimal(amount_minor) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(percent) + FEE_FIXED_MINOR


def no_such(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    """Stripe answers 404 for an id in the URL, 400 for an id passed as a parameter."""
    return StripeError(
        404 if param is None else 400,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        param=param or "id",
        code="resource_missing",
    )


def merge_metadata(current: dict[str, str] | None, update: Any) -> dict[str, str]:
    """Stripe's metadata semantics: ``""`` clears all, a key set to ``""`` is removed."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise invalid("Metadata can have at most 50 keys.", param="metadata")
    for key, value in merged.items():
        if len(key) > 40 or len(value) > 500:
            raise invalid(
                "Metadata keys are limited to 40 characters and values to 500.",
                param=f"metadata[{key}]",
            )
    return merged


def diff(before: Obj, after: Obj) -> dict[str, Any]:
    """``previous_attributes`` of an update event: the old value of every changed top field."""
    return {key: before.get(key) for key in after if before.get(key) != after.get(key)}


@dataclass(frozen=True)
class RequestInfo:
    """What an Event's ``request`` says: the API request that caused it, or none (dashboard)."""

    id: str | None = None
    idempotency_key: str | None = None


class Store:
    """All objects of one stand-in Stripe account."""

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        on_event: Callable[[Obj], None] | None = None,
        base_url: str = "http://127.0.0.1",
    ) -> None:
        self.lock = threading.RLock()
        self.base_url = base_url
        self._now = now
        self._on_event = on_event
        self._tables: dict[str, dict[str, Obj]] = {}
        self._created: Counter[str] = Counter()
        self._invoice_lines: dict[str, list[str]] = {}
        self._credit_note_lines: dict[str, list[str]] = {}
        # Bookkeeping Stripe does not show: kept beside the objects so responses stay exact.
        self._days_until_due: dict[str, int | None] = {}
        self._balance_applied: dict[str, int] = {}
        self._line_of_item: dict[str, str] = {}
        self._request = RequestInfo()
        self.declined_customers: set[str] = set()
        self.declines_left = 0

    # -- plumbing -----------------------------------------------------------------------------

    def now(self) -> int:
        return int(self._now())

    def set_clock(self, now: Callable[[], float]) -> None:
        self._now = now

    @contextlib.contextmanager
    def request_scope(self, request_id: str | None, idempotency_key: str | None) -> Iterator[None]:
        previous = self._request
        self._request = RequestInfo(request_id, idempotency_key)
        try:
            yield
        finally:
            self._request = previous

    def table(self, kind: str) -> dict[str, Obj]:
        return self._tables.setdefault(kind, {})

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` (``"customer"``, ``"invoice"``...) were ever created."""
        return self._created[kind]

    def all(self, kind: str) -> list[Obj]:
        """Snapshots of every object of ``kind``, oldest first."""
        with self.lock:
            return copy.deepcopy(list(self.table(kind).values()))

    def _insert(self, kind: str, obj: Obj) -> Obj:
        self.table(kind)[obj["id"]] = obj
        self._created[kind] += 1
        return obj

    def _new(self, kind: str, **values: Any) -> Obj:
        values.setdefault("id", objects.new_id(kind))
        if "created" in sdk_types.fields(objects.resource_class(kind)):
            values.setdefault("created", self.now())
        return self._insert(kind, objects.build(kind, **values))

    def get(self, kind: str, object_id: str, *, param: str | None = None) -> Obj:
        obj = self.table(kind).get(object_id)
        if obj is None:
            raise no_such(kind, object_id, param=param)
        return obj

    def _live(self, kind: str, object_id: str, *, param: str | None = None) -> Obj:
        obj = self.get(kind, object_id, param=param)
        if obj.get("deleted"):
            raise no_such(kind, object_id, param=param)
        return obj

    def find(self, object_id: str) -> Obj | None:
        """Any object by id (products may have caller-chosen ids without a prefix)."""
        kind = _KIND_BY_PREFIX.get(object_id.rsplit("_", 1)[0])
        if kind is not None and object_id in self.table(kind):
            return self.table(kind)[object_id]
        return next((t[object_id] for t in self._tables.values() if object_id in t), None)

    def emit(self, event_type: str, obj: Obj, previous: dict[str, Any] | None = None) -> Obj:
        request = objects.sub_object(
            "event", "Request", id=self._request.id, idempotency_key=self._request.idempotency_key
        )
        event = self._new(
            "event",
            api_version=API_VERSION,
            data={"object": copy.deepcopy(obj), "previous_attributes": previous},
            pending_webhooks=1 if self._on_event else 0,
            request=request,
            type=event_type,
        )
        if self._on_event is not None:
            self._on_event(copy.deepcopy(event))
        return event

    def _updated(self, event_type: str, obj: Obj, before: Obj) -> None:
        changes = diff(before, obj)
        if changes:
            self.emit(event_type, obj, changes)

    # -- lists --------------------------------------------------------------------------------

    def page(self, items: list[Obj], params: Params, url: str) -> Obj:
        """One page of a newest-first list: ``limit``, ``starting_after``, ``ending_before``."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", param="limit")
        ids = [item["id"] for item in items]
        window = items
        for cursor in ("starting_after", "ending_before"):
            if cursor in params:
                if params[cursor] not in ids:
                    raise no_such("object", params[cursor], param=cursor)
                index = ids.index(params[cursor])
                window = items[index + 1 :] if cursor == "starting_after" else items[:index]
        data = window[-limit:] if "ending_before" in params else window[:limit]
        return objects.list_object(copy.deepcopy(data), url=url, has_more=len(window) > len(data))

    def select(self, kind: str, params: Params, filters: dict[str, str] | None = None) -> list[Obj]:
        """Objects of ``kind``, newest first, narrowed by equality filters and ``created``."""
        items = [o for o in reversed(self.table(kind).values()) if not o.get("deleted")]
        for param, field in (filters or {}).items():
            if param in params:
                items = [o for o in items if o.get(field) == params[param]]
        if "created" in params:
            items = [o for o in items if _in_range(o["created"], params["created"])]
        return items

    def expand(self, obj: Obj, paths: list[str]) -> Obj:
        """Replace the ids at the dotted ``expand`` paths with the objects they name."""
        for path in paths:
            self._expand_path(obj, path.split("."))
        return obj

    def _expand_path(self, node: Any, parts: list[str]) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if head == "data" and node.get("object") == "list":
            for item in node["data"]:
                self._expand_path(item, rest)
            return
        value = node.get(head)
        if isinstance(value, str) and (target := self.find(value)) is not None:
            node[head] = value = copy.deepcopy(target)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str) and (target := self.find(item)) is not None:
                    value[index] = copy.deepcopy(target)
            return
        self._expand_path(value, rest)

    # -- customers ----------------------------------------------------------------------------

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
            settings.update(
                {
                    k: v or None
                    for k, v in params["invoice_settings"].items()
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

    # -- products and prices ------------------------------------------------------------------

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
                flat_amount_decimal=_decimal_text(
                    t.get("flat_amount_decimal", t.get("flat_amount"))
                ),
                unit_amount=t.get("unit_amount"),
                unit_amount_decimal=_decimal_text(
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
            currency=params["currency"].lower(),
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
            unit_amount_decimal=_decimal_text(unit_decimal),
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

    # -- invoices -----------------------------------------------------------------------------

    _INVOICE_EDITABLE_WHEN_OPEN = frozenset(
        {"auto_advance", "description", "footer", "metadata", "due_date", "days_until_due"}
    )

    def create_invoice(self, params: Params) -> Obj:
        customer_id = params.get("customer")
        if customer_id is None:
            raise invalid(
                "Missing required param: customer.", param="customer", code="parameter_missing"
            )
        customer = self._live("customer", customer_id, param="customer")
        collection = params.get("collection_method", "charge_automatically")
        if collection == "send_invoice" and not (
            "days_until_due" in params or "due_date" in params
        ):
            raise invalid(
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                param="days_until_due",
            )
        if collection == "charge_automatically" and (
            "days_until_due" in params or "due_date" in params
        ):
            raise invalid(
                "days_until_due and due_date are only for collection_method=send_invoice.",
                param="days_until_due",
            )
        currency = params.get("currency", customer["currency"] or "usd").lower()
        pending = []
        if params.get("pending_invoice_items_behavior") == "include":
            pending = [
                item
                for item in self.table("invoiceitem").values()
                if item.get("customer") == customer_id
                and item.get("invoice") is None
                and not item.get("deleted")
            ]
            if any(item["currency"] != currency for item in pending):
                raise invalid("Pending invoice items must share the invoice currency.")
        now = self.now()
        auto_advance = params.get("auto_advance", False)
        invoice_id = objects.new_id("invoice")
        invoice = self._new(
            "invoice",
            id=invoice_id,
            account_country="US",
            account_name="Kefu Stripe stand-in",
            auto_advance=auto_advance,
            automatically_finalizes_at=now + 3600 if auto_advance else None,
            billing_reason="manual",
            collection_method=collection,
            currency=currency,
            custom_fields=params.get("custom_fields") or None,
            customer=customer_id,
            customer_email=customer["email"],
            customer_name=customer["name"],
            customer_phone=customer["phone"],
            customer_address=customer["address"],
            customer_tax_exempt=customer["tax_exempt"],
            description=params.get("description"),
            due_date=params.get("due_date"),
            footer=params.get("footer"),
            lines=objects.list_object([], url=f"/v1/invoices/{invoice_id}/lines", has_more=False),
            metadata=merge_metadata({}, params.get("metadata", {})),
            number=params.get("number"),
            payments=objects.list_object(
                [], url=f"/v1/invoices/{invoice_id}/payments", has_more=False
            ),
            period_end=now,
            period_start=now,
            statement_descriptor=params.get("statement_descriptor"),
            status="draft",
        )
        self._days_until_due[invoice_id] = params.get("days_until_due")
        self._balance_applied[invoice_id] = 0
        self._invoice_lines[invoice_id] = []
        if customer["currency"] is None:
            customer["currency"] = currency
        for item in pending:
            item["invoice"] = invoice_id
            self._add_line(invoice, item)
        self._refresh_invoice(invoice)
        self.emit("invoice.created", invoice)
        return invoice

    def _invoice(self, invoice_id: str, *, param: str | None = None) -> Obj:
        return self._live("invoice", invoice_id, param=param)

    def _refresh_invoice(self, invoice: Obj) -> None:
        """Recompute lines and totals from the invoice's items, payments and credit notes."""
        lines = [self.table("line_item")[i] for i in self._invoice_lines[invoice["id"]]]
        subtotal = sum(line["amount"] for line in lines)
        invoice["lines"] = objects.list_object(
            copy.deepcopy(lines[:INLINE_LIST_LIMIT]),
            url=f"/v1/invoices/{invoice['id']}/lines",
            has_more=len(lines) > INLINE_LIST_LIMIT,
        )
        invoice["subtotal"] = invoice["subtotal_excluding_tax"] = subtotal
        invoice["total"] = invoice["total_excluding_tax"] = subtotal
        invoice["total_discount_amounts"] = []
        invoice["total_taxes"] = []
        invoice["total_pretax_credit_amounts"] = []
        if invoice["status"] in ("draft", "open", "uncollectible"):
            due = max(
                0,
                subtotal
                + self._balance_applied[invoice["id"]]
                - invoice["pre_payment_credit_notes_amount"],
            )
            invoice["amount_due"] = due
            invoice["amount_remaining"] = max(0, due - invoice["amount_paid"])
        if invoice["status"] == "void":
            invoice["amount_remaining"] = 0

    def update_invoice(self, invoice_id: str, params: Params) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] in ("paid", "void") and set(params) - {"metadata", "expand"}:
            raise invalid(
                f"This invoice is {invoice['status']}; only its metadata can be changed.",
                code="invoice_not_editable",
            )
        if invoice["status"] in ("open", "uncollectible"):
            locked = set(params) - self._INVOICE_EDITABLE_WHEN_OPEN - {"expand"}
            if locked:
                name = sorted(locked)[0]
                raise invalid(
                    f"You can only modify {name} on a draft invoice.",
                    param=name,
                    code="invoice_not_editable",
                )
        values: dict[str, Any] = {}
        for key in ("auto_advance", "description", "footer", "statement_descriptor", "due_date"):
            if key in params:
                values[key] = params[key] if params[key] != "" else None
        if "metadata" in params:
            values["metadata"] = merge_metadata(invoice["metadata"], params["metadata"])
        if "collection_method" in params:
            values["collection_method"] = params["collection_method"]
        if "days_until_due" in params:
            self._days_until_due[invoice_id] = params["days_until_due"]
        before = copy.deepcopy(invoice)
        invoice.update(values)
        if invoice["status"] == "draft":
            invoice["automatically_finalizes_at"] = (
                self.now() + 3600 if invoice["auto_advance"] else None
            )
        self._updated("invoice.updated", invoice, before)
        return invoice

    def delete_invoice(self, invoice_id: str) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise invalid(
                "You can only delete draft invoices. Void finalized invoices instead.",
                code="invoice_not_editable",
            )
        snapshot = copy.deepcopy(invoice)
        for line_id in self._invoice_lines.pop(invoice_id, []):
            line = self.table("line_item").pop(line_id)
            item_id = line["parent"]["invoice_item_details"]["invoice_item"]
            self._line_of_item.pop(item_id, None)
            self.table("invoiceitem")[item_id] = objects.deleted_object("invoiceitem", item_id)
        self.table("invoice")[invoice_id] = objects.deleted_object("invoice", invoice_id)
        self.emit("invoice.deleted", snapshot)
        return self.table("invoice")[invoice_id]

    def list_invoices(self, params: Params) -> Obj:
        items = self.select(
            "invoice",
            params,
            {"customer": "customer", "status": "status", "collection_method": "collection_method"},
        )
        if "due_date" in params:
            items = [
                i for i in items if i["due_date"] and _in_range(i["due_date"], params["due_date"])
            ]
        return self.page(items, params, "/v1/invoices")

    def invoice_lines(self, invoice_id: str, params: Params) -> Obj:
        self._invoice(invoice_id)
        lines = [self.table("line_item")[i] for i in self._invoice_lines[invoice_id]]
        # Lines read in invoice order, unlike top-level lists.
        return self.page(lines, params, f"/v1/invoices/{invoice_id}/lines")

    def finalize_invoice(self, invoice_id: str, params: Params) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        customer = self._live("customer", invoice["customer"])
        now = self.now()
        if "auto_advance" in params:
            invoice["auto_advance"] = params["auto_advance"]
        # A credit (negative balance) pays down the invoice as far as it goes; a debt is added.
        balance = customer["balance"]
        applied = max(balance, -invoice["total"]) if balance < 0 else balance
        self._balance_applied[invoice_id] = applied
        invoice["starting_balance"] = balance
        invoice["ending_balance"] = customer["balance"] = balance - applied
        if invoice["number"] is None:
            invoice["number"] = (
                f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
            )
            customer["next_invoice_sequence"] += 1
        invoice["status"] = "open"
        invoice["effective_at"] = now
        invoice["automatically_finalizes_at"] = None
        invoice["status_transitions"]["finalized_at"] = now
        invoice["hosted_invoice_url"] = f"{self.base_url}/_standin/hosted/{invoice_id}"
        invoice["invoice_pdf"] = f"{self.base_url}/_standin/hosted/{invoice_id}.pdf"
        if invoice["collection_method"] == "send_invoice" and invoice["due_date"] is None:
            invoice["due_date"] = now + 86400 * (self._days_until_due[invoice_id] or 30)
        if invoice["collection_method"] == "charge_automatically" and invoice["auto_advance"]:
            invoice["next_payment_attempt"] = now
        self._refresh_invoice(invoice)
        self.emit("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self._settle(invoice, amount_paid=0)
        return invoice

    def _settle(self, invoice: Obj, *, amount_paid: int, payment: Obj | None = None) -> None:
        """Mark an invoice paid and announce it (``invoice.paid`` and its companions)."""
        now = self.now()
        invoice["amount_paid"] += amount_paid
        invoice["amount_remaining"] = 0
        invoice["status"] = "paid"
        invoice["next_payment_attempt"] = None
        invoice["automatically_finalizes_at"] = None
        invoice["status_transitions"]["paid_at"] = now
        if payment is not None:
            invoice_payments = [
                p for p in self.table("invoice_payment").values() if p["invoice"] == invoice["id"]
            ]
            invoice["payments"] = objects.list_object(
                copy.deepcopy(invoice_payments),
                url=f"/v1/invoices/{invoice['id']}/payments",
                has_more=False,
            )
        self.emit("invoice.paid", invoice)
        self.emit("invoice.payment_succeeded", invoice)

    def pay_invoice(self, invoice_id: str, params: Params) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] == "paid":
            raise invalid("Invoice is already paid.", code="invoice_already_paid")
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(
                f"You cannot pay an invoice with status {invoice['status']}.",
                code="invoice_not_open",
            )
        if params.get("paid_out_of_band"):
            amount = invoice["amount_remaining"]
            invoice["amount_paid_off_stripe"] = (invoice["amount_paid_off_stripe"] or 0) + amount
            invoice["attempted"] = True
            self._settle(invoice, amount_paid=amount)
            return invoice
        customer_id = invoice["customer"]
        declined = customer_id in self.declined_customers or self.declines_left > 0
        if declined:
            self.declines_left = max(0, self.declines_left - 1)
            error = self._fail_payment(invoice)
            raise error
        self._charge_invoice(invoice)
        return invoice

    def attempt_collection(self, invoice_id: str) -> Obj:
        """Stripe's automatic collection attempt: pay, or record a failure without raising."""
        try:
            return self.pay_invoice(invoice_id, {})
        except StripeError as error:
            if error.type != "card_error":
                raise
            return self.get("invoice", invoice_id)

    def _charge_invoice(self, invoice: Obj) -> Obj:
        amount = invoice["amount_remaining"]
        intent, charge = self._create_payment(
            amount=amount,
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=f"Payment for Invoice {invoice['number']}",
            succeeded=True,
        )
        payment = self._new(
            "invoice_payment",
            amount_paid=amount,
            amount_requested=amount,
            currency=invoice["currency"],
            invoice=invoice["id"],
            is_default=True,
            payment=objects.sub_object(
                "invoice_payment", "Payment", type="payment_intent", payment_intent=intent["id"]
            ),
            status="paid",
            status_transitions=objects.sub_object(
                "invoice_payment", "StatusTransitions", paid_at=self.now()
            ),
        )
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        self.emit("invoice_payment.paid", payment)
        self._settle(invoice, amount_paid=amount, payment=payment)
        return charge

    def _fail_payment(self, invoice: Obj) -> StripeError:
        intent, charge = self._create_payment(
            amount=invoice["amount_remaining"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=f"Payment for Invoice {invoice['number']}",
            succeeded=False,
        )
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        invoice["next_payment_attempt"] = (
            self.now() + RETRY_AFTER_FAILURE_SECONDS if invoice["auto_advance"] else None
        )
        self.emit("invoice.payment_failed", invoice)
        return StripeError(
            402,
            "card_error",
            "Your card was declined.",
            code="card_declined",
            extra={
                "decline_code": "generic_decline",
                "charge": charge["id"],
                "payment_intent": copy.deepcopy(intent),
            },
        )

    def _create_payment(
        self, *, amount: int, currency: str, customer: str, description: str, succeeded: bool
    ) -> tuple[Obj, Obj]:
        """A PaymentIntent and its card Charge (+ balance transaction when it succeeds)."""
        intent_id = objects.new_id("payment_intent")
        charge_id = objects.new_id("charge")
        card = objects.sub_object(
            "charge",
            "PaymentMethodDetails.Card",
            brand="visa",
            country="US",
            exp_month=12,
            exp_year=2034,
            funding="credit",
            last4="0002" if not succeeded else "4242",
            network="visa",
        )
        details = objects.sub_object("charge", "PaymentMethodDetails", type="card", card=card)
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
        payment_method = "pm_card_visa" if succeeded else "pm_card_chargeDeclined"
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
            payment_method=payment_method,
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
            payment_method=payment_method,
            payment_method_types=["card"],
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

    def void_invoice(self, invoice_id: str) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(
                "You can only void open or uncollectible invoices "
                f"(this one is {invoice['status']}).",
                code="invoice_not_editable",
            )
        invoice["status"] = "void"
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["voided_at"] = self.now()
        self._refresh_invoice(invoice)
        self.emit("invoice.voided", invoice)
        return invoice

    def mark_uncollectible(self, invoice_id: str) -> Obj:
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise invalid(
                f"You can only mark open invoices uncollectible (this one is {invoice['status']}).",
                code="invoice_not_editable",
            )
        invoice["status"] = "uncollectible"
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["marked_uncollectible_at"] = self.now()
        self.emit("invoice.marked_uncollectible", invoice)
        return invoice

    # -- invoice items ------------------------------------------------------------------------

    def create_invoice_item(self, params: Params) -> Obj:
        invoice = None
        if "invoice" in params:
            invoice = self._invoice(params["invoice"], param="invoice")
            if invoice["status"] != "draft":
                raise invalid(
                    "You can only add invoice items to draft invoices.",
                    param="invoice",
                    code="invoice_not_editable",
                )
        customer_id = params.get("customer") or (invoice and invoice["customer"])
        if customer_id is None:
            raise invalid(
                "Missing required param: customer.", param="customer", code="parameter_missing"
            )
        if invoice is not None and customer_id != invoice["customer"]:
            raise invalid("The invoice belongs to another customer.", param="customer")
        self._live("customer", customer_id, param="customer")
        pricing = self._item_pricing(params, None)
        currency = pricing["currency"]
        if invoice is not None and currency != invoice["currency"]:
            raise invalid(
                f"The currency {currency} does not match the invoice currency "
                f"{invoice['currency']}.",
                param="currency",
            )
        now = self.now()
        period = params.get("period", {"start": now, "end": now})
        item = self._new(
            "invoiceitem",
            amount=pricing["amount"],
            currency=currency,
            customer=customer_id,
            date=now,
            description=params.get("description"),
            discountable=params.get("discountable", pricing["amount"] >= 0),
            discounts=[],
            invoice=invoice["id"] if invoice else None,
            metadata=merge_metadata({}, params.get("metadata", {})),
            net_amount=pricing["amount"],
            period=objects.sub_object("invoiceitem", "Period", **period),
            pricing=pricing["pricing"],
            proration=False,
            quantity=pricing["quantity"],
            quantity_decimal=pricing["quantity_decimal"],
            tax_rates=[],
        )
        if invoice is not None:
            self._add_line(invoice, item)
            self._refresh_invoice(invoice)
        self.emit("invoiceitem.created", item)
        return item

    def _item_pricing(self, params: Params, item: Obj | None) -> dict[str, Any]:
        """Amount, quantity and pricing of an invoice item from amount / unit price / price."""
        sources = [k for k in ("amount", "price_data", "pricing") if k in params]
        if "unit_amount_decimal" in params:
            sources.append("unit_amount_decimal")
        if len(sources) > 1:
            raise invalid(
                f"You may only specify one of these parameters: {', '.join(sources)}.",
                param=sources[1],
            )
        quantity = Decimal(params.get("quantity_decimal", params.get("quantity", 1)))
        if "quantity" in params and "quantity_decimal" in params:
            raise invalid(
                "You may only specify one of these parameters: quantity, quantity_decimal.",
                param="quantity_decimal",
            )
        if quantity < 0:
            raise invalid("Invalid quantity: must be 0 or more.", param="quantity")
        price_details = None
        currency = params.get("currency")
        if not sources and item is not None:
            unit = Decimal(item["pricing"]["unit_amount_decimal"])
            price_details = item["pricing"]["price_details"]
            currency = item["currency"]
            if "quantity" not in params and "quantity_decimal" not in params:
                quantity = Decimal(item["quantity_decimal"])
        elif not sources:
            raise invalid(
                "Missing required param: amount.", param="amount", code="parameter_missing"
            )
        elif sources == ["amount"]:
            if "quantity" in params or "quantity_decimal" in params:
                raise invalid(
                    "Pass unit_amount_decimal with quantity, not amount.", param="quantity"
                )
            unit = Decimal(params["amount"])
            quantity = Decimal(1)
        elif sources == ["unit_amount_decimal"]:
            unit = params["unit_amount_decimal"]
        elif sources == ["price_data"]:
            data = params["price_data"]
            self._live("product", data["product"], param="price_data[product]")
            unit = Decimal(data.get("unit_amount", data.get("unit_amount_decimal", 0)))
            currency = data["currency"]
        else:
            price = self.get("price", params["pricing"].get("price", ""), param="pricing[price]")
            if not price["active"]:
                raise invalid("The price is archived.", param="pricing[price]")
            unit = Decimal(price["unit_amount_decimal"] or 0)
            currency = price["currency"]
            price_details = objects.sub_object(
                "invoiceitem", "Pricing.PriceDetails", price=price["id"], product=price["product"]
            )
        if currency is None:
            currency = item["currency"] if item else None
        if currency is None:
            raise invalid(
                "Missing required param: currency.", param="currency", code="parameter_missing"
            )
        amount = int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return {
            "amount": amount,
            "currency": currency.lower(),
            "quantity": int(quantity.to_integral_value(rounding=ROUND_HALF_UP)),
            "quantity_decimal": _decimal_text(quantity),
            "pricing": objects.sub_object(
                "invoiceitem",
                "Pricing",
                type="price_details",
                price_details=price_details,
                unit_amount_decimal=_decimal_text(unit),
            ),
        }

    def _add_line(self, invoice: Obj, item: Obj) -> Obj:
        line = self._new(
            "line_item",
            id=objects.new_id("line_item"),
            invoice=invoice["id"],
        )
        self._fill_line(line, item)
        self._invoice_lines[invoice["id"]].append(line["id"])
        self._line_of_item[item["id"]] = line["id"]
        return line

    @staticmethod
    def _fill_line(line: Obj, item: Obj) -> None:
        pricing = item["pricing"]
        line.update(
            amount=item["amount"],
            currency=item["currency"],
            description=item["description"],
            discount_amounts=[],
            discountable=item["discountable"],
            metadata=copy.deepcopy(item["metadata"]),
            parent=objects.sub_object(
                "line_item",
                "Parent",
                type="invoice_item_details",
                invoice_item_details=objects.sub_object(
                    "line_item", "Parent.InvoiceItemDetails", invoice_item=item["id"]
                ),
            ),
            period=objects.sub_object("line_item", "Period", **item["period"]),
            pretax_credit_amounts=[],
            pricing=objects.sub_object(
                "line_item",
                "Pricing",
                type="price_details",
                price_details=None
                if pricing["price_details"] is None
                else objects.sub_object(
                    "line_item", "Pricing.PriceDetails", **pricing["price_details"]
                ),
                unit_amount_decimal=pricing["unit_amount_decimal"],
            ),
            quantity=item["quantity"],
            quantity_decimal=item["quantity_decimal"],
            subtotal=item["amount"],
            taxes=[],
        )

    def _editable_item(self, item_id: str) -> tuple[Obj, Obj | None]:
        item = self._live("invoiceitem", item_id)
        invoice = self.get("invoice", item["invoice"]) if item["invoice"] else None
        if invoice is not None and invoice["status"] != "draft":
            raise invalid(
                "You can only change invoice items on draft invoices.",
                code="invoice_not_editable",
            )
        return item, invoice

    def update_invoice_item(self, item_id: str, params: Params) -> Obj:
        item, invoice = self._editable_item(item_id)
        pricing = self._item_pricing(params, item)
        values: dict[str, Any] = {
            "amount": pricing["amount"],
            "net_amount": pricing["amount"],
            "pricing": pricing["pricing"],
            "quantity": pricing["quantity"],
            "quantity_decimal": pricing["quantity_decimal"],
        }
        for key in ("description", "discountable"):
            if key in params:
                values[key] = params[key]
        if "period" in params:
            values["period"] = objects.sub_object("invoiceitem", "Period", **params["period"])
        if "metadata" in params:
            values["metadata"] = merge_metadata(item["metadata"], params["metadata"])
        item.update(values)
        if invoice is not None:
            before = copy.deepcopy(invoice)
            self._fill_line(self.table("line_item")[self._line_of_item[item_id]], item)
            self._refresh_invoice(invoice)
            self._updated("invoice.updated", invoice, before)
        return item

    def delete_invoice_item(self, item_id: str) -> Obj:
        item, invoice = self._editable_item(item_id)
        snapshot = copy.deepcopy(item)
        if invoice is not None:
            line_id = self._line_of_item.pop(item_id)
            self._invoice_lines[invoice["id"]].remove(line_id)
            del self.table("line_item")[line_id]
            self._refresh_invoice(invoice)
        self.table("invoiceitem")[item_id] = objects.deleted_object("invoiceitem", item_id)
        self.emit("invoiceitem.deleted", snapshot)
        return self.table("invoiceitem")[item_id]

    def list_invoice_items(self, params: Params) -> Obj:
        items = self.select("invoiceitem", params, {"customer": "customer", "invoice": "invoice"})
        if "pending" in params:
            items = [i for i in items if (i["invoice"] is None) == params["pending"]]
        return self.page(items, params, "/v1/invoiceitems")

    # -- refunds ------------------------------------------------------------------------------

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

    # -- credit notes -------------------------------------------------------------------------

    def create_credit_note(self, params: Params) -> Obj:
        invoice = self._invoice(params["invoice"], param="invoice")
        if invoice["status"] not in ("open", "paid"):
            raise invalid(
                f"You can only create credit notes for open or paid invoices "
                f"(this one is {invoice['status']}).",
                param="invoice",
            )
        lines = self._credit_note_lines_for(invoice, params)
        total = sum(line["amount"] for line in lines)
        if "amount" in params and params["amount"] != total and "lines" in params:
            raise invalid("The amount must equal the sum of the line amounts.", param="amount")
        if total <= 0:
            raise invalid("A credit note needs a positive amount.", param="amount")
        is_pre_payment = invoice["status"] == "open"
        if is_pre_payment:
            creditable = invoice["amount_remaining"]
        else:
            creditable = invoice["amount_paid"] - invoice["post_payment_credit_notes_amount"]
        if total > creditable:
            raise invalid(
                f"The credit note amount ({total}) exceeds the invoice's creditable amount "
                f"({creditable}).",
                param="amount",
            )
        allocation = self._credit_allocation(invoice, params, total, is_pre_payment)
        now = self.now()
        count = 1 + sum(
            1 for c in self.table("credit_note").values() if c["invoice"] == invoice["id"]
        )
        note_id = objects.new_id("credit_note")
        note = self._new(
            "credit_note",
            id=note_id,
            amount=total,
            currency=invoice["currency"],
            customer=invoice["customer"],
            effective_at=params.get("effective_at", now),
            invoice=invoice["id"],
            memo=params.get("memo"),
            metadata=merge_metadata({}, params.get("metadata", {})),
            number=f"{invoice['number']}-CN-{count:02d}",
            out_of_band_amount=allocation["out_of_band"] or None,
            pdf=f"{self.base_url}/_standin/hosted/{note_id}.pdf",
            post_payment_amount=0 if is_pre_payment else total,
            pre_payment_amount=total if is_pre_payment else 0,
            reason=params.get("reason"),
            status="issued",
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            total_taxes=[],
            type="pre_payment" if is_pre_payment else "post_payment",
        )
        stored_lines = []
        for line in lines:
            stored = self._new("credit_note_line_item", **line)
            stored_lines.append(stored)
        self._credit_note_lines[note_id] = [line["id"] for line in stored_lines]
        note["lines"] = objects.list_object(
            copy.deepcopy(stored_lines[:INLINE_LIST_LIMIT]),
            url=f"/v1/credit_notes/{note_id}/lines",
            has_more=len(stored_lines) > INLINE_LIST_LIMIT,
        )
        refunds = []
        if allocation["refund"]:
            charge = self._invoice_charge(invoice)
            refund = self.refund_charge(charge, amount=allocation["refund"])
            refunds.append((refund["id"], allocation["refund"]))
        refunds.extend(allocation["linked_refunds"])
        note["refunds"] = [
            objects.sub_object(
                "credit_note", "Refund", amount_refunded=amount, refund=refund_id, type="refund"
            )
            for refund_id, amount in refunds
        ]
        if allocation["credit"]:
            customer = self._live("customer", invoice["customer"])
            customer_before = copy.deepcopy(customer)
            customer["balance"] -= allocation["credit"]
            self._updated("customer.updated", customer, customer_before)
        before = copy.deepcopy(invoice)
        if is_pre_payment:
            invoice["pre_payment_credit_notes_amount"] += total
        else:
            invoice["post_payment_credit_notes_amount"] += total
        self._refresh_invoice(invoice)
        self.emit("credit_note.created", note)
        self._updated("invoice.updated", invoice, before)
        if is_pre_payment and invoice["amount_remaining"] == 0:
            self._settle(invoice, amount_paid=0)
        return note

    def _credit_note_lines_for(self, invoice: Obj, params: Params) -> list[dict[str, Any]]:
        """Credit note line values from ``lines`` (or one custom line for a bare ``amount``)."""
        if "lines" not in params:
            if "amount" not in params:
                raise invalid(
                    "Provide lines or amount for a credit note.",
                    param="lines",
                    code="parameter_missing",
                )
            return [
                {
                    "amount": params["amount"],
                    "description": params.get("memo") or "Credit",
                    "quantity": 1,
                    "type": "custom_line_item",
                    "unit_amount": params["amount"],
                    "unit_amount_decimal": str(params["amount"]),
                    "metadata": {},
                }
            ]
        invoice_lines = {i: self.table("line_item")[i] for i in self._invoice_lines[invoice["id"]]}
        out = []
        for index, line in enumerate(params["lines"]):
            where = f"lines[{index}]"
            if line["type"] == "invoice_line_item":
                source = invoice_lines.get(line.get("invoice_line_item", ""))
                if source is None:
                    raise no_such(
                        "invoice line item",
                        line.get("invoice_line_item", ""),
                        param=f"{where}[invoice_line_item]",
                    )
                if "amount" in line:
                    amount = line["amount"]
                elif "quantity" in line:
                    unit = Decimal(source["pricing"]["unit_amount_decimal"] or 0)
                    amount = int(
                        (unit * line["quantity"]).quantize(Decimal(1), rounding=ROUND_HALF_UP)
                    )
                else:
                    amount = source["amount"]
                if amount > source["amount"]:
                    raise invalid(
                        "The line amount exceeds the invoice line amount.", param=f"{where}[amount]"
                    )
                out.append(
                    {
                        "amount": amount,
                        "description": line.get("description", source["description"]),
                        "invoice_line_item": source["id"],
                        "quantity": line.get("quantity", source["quantity"]),
                        "type": "invoice_line_item",
                        "metadata": line.get("metadata", {}),
                    }
                )
            else:
                unit = Decimal(line.get("unit_amount", line.get("unit_amount_decimal", 0)))
                quantity = line.get("quantity", 1)
                amount = int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))
                out.append(
                    {
                        "amount": amount,
                        "description": line.get("description"),
                        "quantity": quantity,
                        "type": "custom_line_item",
                        "unit_amount": line.get("unit_amount"),
                        "unit_amount_decimal": _decimal_text(unit),
                        "metadata": line.get("metadata", {}),
                    }
                )
        for line in out:
            line["livemode"] = False
            line["discount_amount"] = 0
            line["taxes"] = []
        return out

    def _credit_allocation(
        self, invoice: Obj, params: Params, total: int, is_pre_payment: bool
    ) -> dict[str, Any]:
        refund = params.get("refund_amount", 0)
        credit = params.get("credit_amount", 0)
        out_of_band = params.get("out_of_band_amount", 0)
        linked = []
        for index, entry in enumerate(params.get("refunds", [])):
            existing = self.get(
                "refund", entry.get("refund", ""), param=f"refunds[{index}][refund]"
            )
            amount = entry.get("amount_refunded", existing["amount"])
            if amount > existing["amount"]:
                raise invalid(
                    "amount_refunded exceeds the refund.",
                    param=f"refunds[{index}][amount_refunded]",
                )
            linked.append((existing["id"], amount))
        linked_total = sum(amount for _, amount in linked)
        if is_pre_payment:
            if refund or credit or out_of_band or linked:
                raise invalid(
                    "refund_amount, credit_amount, out_of_band_amount and refunds apply to "
                    "paid invoices only.",
                    param="refund_amount",
                )
            return {"refund": 0, "credit": 0, "out_of_band": 0, "linked_refunds": []}
        if not (refund or credit or out_of_band or linked):
            credit = total  # Stripe's default for a paid invoice: credit the customer balance
        if refund + credit + out_of_band + linked_total != total:
            raise invalid(
                "The sum of credit amount, refund amount and out of band amount must equal the "
                "credit note amount.",
                param="refund_amount",
            )
        if refund:
            charge = self._invoice_charge(invoice)
            refundable = charge["amount"] - charge["amount_refunded"]
            if refund > refundable:
                raise invalid(
                    f"refund_amount ({refund}) exceeds what is left to refund ({refundable}).",
                    param="refund_amount",
                )
        return {
            "refund": refund,
            "credit": credit,
            "out_of_band": out_of_band,
            "linked_refunds": linked,
        }

    def _invoice_charge(self, invoice: Obj) -> Obj:
        for payment in self.table("invoice_payment").values():
            if payment["invoice"] == invoice["id"] and payment["status"] == "paid":
                intent = self.get("payment_intent", payment["payment"]["payment_intent"])
                return self.get("charge", intent["latest_charge"])
        raise invalid(
            "This invoice was not paid through Stripe; nothing to refund.", param="refund_amount"
        )

    def update_credit_note(self, note_id: str, params: Params) -> Obj:
        note = self.get("credit_note", note_id)
        before = copy.deepcopy(note)
        if "memo" in params:
            note["memo"] = params["memo"] or None
        if "metadata" in params:
            note["metadata"] = merge_metadata(note["metadata"], params["metadata"])
        self._updated("credit_note.updated", note, before)
        return note

    def void_credit_note(self, note_id: str) -> Obj:
        note = self.get("credit_note", note_id)
        if note["status"] == "void":
            raise invalid("This credit note is already voided.")
        if note["refunds"]:
            raise invalid("A credit note with refunds cannot be voided.")
        invoice = self.get("invoice", note["invoice"])
        if note["type"] == "pre_payment" and invoice["status"] != "open":
            raise invalid("The invoice is no longer open; this credit note cannot be voided.")
        before = copy.deepcopy(invoice)
        if note["type"] == "pre_payment":
            invoice["pre_payment_credit_notes_amount"] -= note["amount"]
        else:
            invoice["post_payment_credit_notes_amount"] -= note["amount"]
            customer = self._live("customer", note["customer"])
            customer["balance"] += note["amount"] - (note["out_of_band_amount"] or 0)
        note["status"] = "void"
        note["voided_at"] = self.now()
        self._refresh_invoice(invoice)
        self.emit("credit_note.voided", note)
        self._updated("invoice.updated", invoice, before)
        return note

    def credit_note_lines(self, note_id: str, params: Params) -> Obj:
        self.get("credit_note", note_id)
        lines = [self.table("credit_note_line_item")[i] for i in self._credit_note_lines[note_id]]
        return self.page(lines, params, f"/v1/credit_notes/{note_id}/lines")

    # -- charges, disputes, the rest ----------------------------------------------------------

    def update_charge(self, charge_id: str, params: Params) -> Obj:
        charge = self.get("charge", charge_id)
        before = copy.deepcopy(charge)
        if "metadata" in params:
            charge["metadata"] = merge_metadata(charge["metadata"], params["metadata"])
        if "description" in params:
            charge["description"] = params["description"] or None
        self._updated("charge.updated", charge, before)
        return charge

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


def _in_range(value: int, condition: Any) -> bool:
    if isinstance(condition, int):
        return value == condition
    checks = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(checks[op](bound) for op, bound in condition.items())


def _decimal_text(value: Any) -> str | None:
    """Stripe's decimal strings: ``"1250"``, ``"12.5"`` (no exponent, no trailing zeros)."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f")
