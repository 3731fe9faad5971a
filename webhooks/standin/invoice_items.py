"""Invoice items of the stand-in account and the invoice lines they become."""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
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


class InvoiceItems(Account):
    """Invoice items, pending or on a draft invoice, each mirrored by one invoice line; changing
    one refreshes its invoice (``Invoices``)."""

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
            "currency": currency_code(currency),
            "quantity": int(quantity.to_integral_value(rounding=ROUND_HALF_UP)),
            "quantity_decimal": decimal_text(quantity),
            "pricing": objects.sub_object(
                "invoiceitem",
                "Pricing",
                type="price_details",
                price_details=price_details,
                unit_amount_decimal=decimal_text(unit),
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
