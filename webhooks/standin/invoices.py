"""Invoices of the stand-in account: drafts, finalization, collection, void, uncollectible."""

from __future__ import annotations

import copy
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import (
    INLINE_LIST_LIMIT,
    Account,
    Obj,
    Params,
    currency_code,
    in_range,
    merge_metadata,
)
from webhooks.standin.payments import MAX_AMOUNT_MINOR
from webhooks.standin.schema import StripeError, invalid

RETRY_AFTER_FAILURE_SECONDS = 3 * 86400
NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. Please consider"
    " adding a default payment method. For more information, visit"
    " https://stripe.com/docs/billing/subscriptions/payment-methods-setting"
    "#payment-method-priority."
)
"""Stripe's refusal to pay an invoice when nothing says what pays it (``resource_missing``)."""


class Invoices(Account):
    """Invoices and their collection. Uses ``InvoiceItems`` for lines and ``Payments`` for the
    payment intent and charge a collection attempt makes."""

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
        currency = currency_code(params.get("currency", customer["currency"] or "usd"))
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
                i for i in items if i["due_date"] and in_range(i["due_date"], params["due_date"])
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
        # The balance is in the customer's currency: an invoice in another one leaves it alone.
        same_currency = customer["currency"] == invoice["currency"]
        balance = customer["balance"] if same_currency else 0
        applied = max(balance, -invoice["total"]) if balance < 0 else balance
        self._balance_applied[invoice_id] = applied
        invoice["starting_balance"] = balance
        invoice["ending_balance"] = balance - applied
        if same_currency:
            customer["balance"] = balance - applied
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
            # Stripe says so in words only: its list of error codes has none for it.
            raise invalid("Invoice is already paid.")
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(f"You cannot pay an invoice with status {invoice['status']}.")
        if params.get("paid_out_of_band"):
            amount = invoice["amount_remaining"]
            invoice["amount_paid_off_stripe"] = (invoice["amount_paid_off_stripe"] or 0) + amount
            invoice["attempted"] = True
            self._settle(invoice, amount_paid=amount)
            return invoice
        method = self._paying_method(invoice, params.get("payment_method"))
        customer_id = invoice["customer"]
        declined = (
            customer_id in self.declined_customers
            or self.declines_left > 0
            or method["id"] in self.declining_payment_methods
        )
        if declined:
            self.declines_left = max(0, self.declines_left - 1)
            error = self._fail_payment(invoice, method)
            raise error
        self._charge_invoice(invoice, method)
        return invoice

    def _paying_method(self, invoice: Obj, explicit: str | None) -> Obj:
        """What pays the invoice, in Stripe's order: the ``payment_method`` of the request, the
        invoice's default, the customer's invoice default. None of them is Stripe's
        ``resource_missing`` (nothing is charged, no event is sent)."""
        customer = self.get("customer", invoice["customer"])
        if explicit:
            return self.attached_method(  # type: ignore[attr-defined, no-any-return]
                explicit, customer["id"], param="payment_method"
            )
        method_id = invoice["default_payment_method"] or (
            (customer.get("invoice_settings") or {}).get("default_payment_method")
        )
        if method_id is None:
            raise StripeError(
                400, "invalid_request_error", NO_PAYMENT_METHOD, code="resource_missing"
            )
        return self.attached_method(  # type: ignore[attr-defined, no-any-return]
            method_id, customer["id"], param="payment_method"
        )

    def send_invoice(self, invoice_id: str) -> Obj:
        """Email the invoice (its hosted page) to the customer: sent invoices only."""
        invoice = self._invoice(invoice_id)
        if invoice["collection_method"] != "send_invoice":
            raise invalid(
                "You can only manually send an invoice if its collection method is 'send_invoice'.",
                code="invoice_not_editable",
            )
        if invoice["status"] == "draft":
            self.finalize_invoice(invoice_id, {})
        if invoice["status"] not in ("open", "paid", "uncollectible"):
            raise invalid(f"You cannot send an invoice with status {invoice['status']}.")
        self.emit("invoice.sent", invoice)
        return invoice

    def pay_on_hosted_page(self, invoice_id: str, *, method: str = "wechat_pay") -> Obj:
        """The customer pays on the invoice's hosted page with a way to pay that is not saved
        (WeChat Pay, or a card typed in there)."""
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise invalid(f"This invoice is {invoice['status']}: there is nothing to pay.")
        self._charge_invoice(invoice, self.new_one_off_method(method))  # type: ignore[attr-defined]
        return invoice

    def attempt_collection(self, invoice_id: str) -> Obj:
        """Stripe's automatic collection attempt: pay, or record a failure without raising."""
        try:
            return self.pay_invoice(invoice_id, {})
        except StripeError as error:
            if error.type != "card_error":
                raise
            return self.get("invoice", invoice_id)

    def _charge_invoice(self, invoice: Obj, method: Obj) -> Obj:
        amount = invoice["amount_remaining"]
        if amount > MAX_AMOUNT_MINOR:
            raise invalid(
                f"Amount must be no more than {MAX_AMOUNT_MINOR} {invoice['currency']} minor"
                " units.",
                param="amount",
                code="amount_too_large",
            )
        intent, charge = self._create_payment(
            amount=amount,
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=f"Payment for Invoice {invoice['number']}",
            succeeded=True,
            payment_method=method,
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

    def _fail_payment(self, invoice: Obj, method: Obj) -> StripeError:
        intent, charge = self._create_payment(
            amount=invoice["amount_remaining"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=f"Payment for Invoice {invoice['number']}",
            succeeded=False,
            payment_method=method,
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
