"""Credit notes: before payment they lower what is due; after, they refund or credit."""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from webhooks.standin import objects
from webhooks.standin.account import (
    INLINE_LIST_LIMIT,
    Account,
    Obj,
    Params,
    decimal_text,
    merge_metadata,
    no_such,
)
from webhooks.standin.schema import invalid


class CreditNotes(Account):
    """Credit notes on open invoices (less to pay) and paid ones (refund, credit or out of
    band). Uses ``Invoices`` for the invoice's totals and ``Refunds`` for the money back."""

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
                        "unit_amount_decimal": decimal_text(unit),
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
            where = f"refunds[{index}]"
            existing = self.get("refund", entry.get("refund", ""), param=f"{where}[refund]")
            if is_pre_payment or existing["charge"] != self._invoice_charge(invoice)["id"]:
                raise invalid(
                    f"Refund {existing['id']} is not a refund of this invoice's payment.",
                    param=f"{where}[refund]",
                )
            if existing["status"] in ("failed", "canceled"):
                raise invalid(
                    f"Refund {existing['id']} is {existing['status']}.", param=f"{where}[refund]"
                )
            amount = entry.get("amount_refunded", existing["amount"])
            already = self._linked_to_credit_notes(existing["id"])
            if amount > existing["amount"] - already:
                raise invalid(
                    f"amount_refunded ({amount}) exceeds what is left of refund "
                    f"{existing['id']} to link ({existing['amount'] - already}).",
                    param=f"{where}[amount_refunded]",
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

    def _linked_to_credit_notes(self, refund_id: str) -> int:
        """How much of a refund credit notes (not void) account for already."""
        return sum(
            entry["amount_refunded"]
            for note in self.table("credit_note").values()
            if note["status"] != "void"
            for entry in note["refunds"]
            if entry["refund"] == refund_id
        )

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
