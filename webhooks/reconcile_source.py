"""Stripe's side of the reconciliation, read with the SDK's list calls and auto-pagination.

``service.finance.reconcile`` matches it against the ledger; it gets this source from the
composition root (app, CLI, tests), so nothing outside ``webhooks/`` touches the SDK. Every
object comes back as a plain ``StripeItem`` (id, amounts in minor units, lower-case currency
upper-cased, status, links).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import stripe

from service.errors import UpstreamUnavailable
from service.finance.reconcile import StripeItem, StripeSnapshot
from webhooks.gateway import Gateway, id_of, metadata_of, stripe_failure

PAGE_SIZE = 100


class StripeLedgerSource:
    """Reads invoices, charges, refunds and balance transactions created in a time range."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def snapshot(self, start: datetime, end: datetime) -> StripeSnapshot:
        try:
            return await asyncio.to_thread(self._read, start, end)
        except stripe.StripeError as error:
            failure = stripe_failure(error)
            # Nothing is stored from a partial read: the caller retries the whole range.
            raise UpstreamUnavailable(
                f"Stripe could not be read ({failure}); nothing was reconciled. "
                "Try again in a minute; if it persists, check STRIPE_API_KEY and Stripe's status",
                retry_after=60,
            ) from error

    def _read(self, start: datetime, end: datetime) -> StripeSnapshot:
        v1 = self.gateway.client.v1
        window = {"gte": int(start.timestamp()), "lt": int(end.timestamp())}

        def every(listing: Any) -> Iterable[Any]:
            return listing(params={"limit": PAGE_SIZE, "created": window}).auto_paging_iter()

        invoices = [
            StripeItem(
                id=obj.id,
                amount_minor=obj.total,
                currency=obj.currency.upper(),
                status=obj.status or "",
                customer=id_of(obj.customer),
                amount_paid_minor=obj.amount_paid,
                reference=metadata_of(obj).get("kefu_invoice_id", ""),
                merchant_id=metadata_of(obj).get("kefu_merchant_id", ""),
                number=obj.number or "",
            )
            for obj in every(v1.invoices.list)
            if obj.status not in (None, "draft")
        ]
        charges = [
            StripeItem(
                id=obj.id,
                amount_minor=obj.amount,
                currency=obj.currency.upper(),
                status=obj.status,
                customer=id_of(obj.customer),
                amount_paid_minor=obj.amount_captured,
                link=id_of(obj.payment_intent),
                balance_transaction=id_of(obj.balance_transaction),
            )
            for obj in every(v1.charges.list)
        ]
        refunds = [
            StripeItem(
                id=obj.id,
                amount_minor=obj.amount,
                currency=obj.currency.upper(),
                status=obj.status or "",
                link=id_of(obj.charge),
                balance_transaction=id_of(obj.balance_transaction),
            )
            for obj in every(v1.refunds.list)
        ]
        transactions = [
            StripeItem(
                id=obj.id,
                amount_minor=obj.amount,
                currency=obj.currency.upper(),
                status=obj.type,
                link=id_of(obj.source),
                fee_minor=obj.fee,
                net_minor=obj.net,
            )
            for obj in every(v1.balance_transactions.list)
        ]
        return StripeSnapshot(
            invoices=invoices, charges=charges, refunds=refunds, transactions=transactions
        )
