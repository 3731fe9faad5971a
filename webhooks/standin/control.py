"""Steering the stand-in from tests and the demo: failure injection and the "dashboard".

``FaultInjector`` decides, before a request touches anything, whether it fails (500, 429, any
status, or a timeout that drops the connection), or is carried out and its answer lost (the
connection drops after Stripe did it: ``"lost"``); it can hold every request a while first (a
slow Stripe), or hold one request until the test lets it go (``hold_next``: kill the caller
meanwhile, and Stripe still does it). ``Dashboard`` does what a person would do in the
Stripe dashboard — refund, void, archive, dispute, mark paid or failed, add a card, save the
portal settings — and ``HostedPages`` what a customer does on Stripe's pages (complete a
Checkout session, pay a hosted invoice, replace a card in the portal), each emitting the events
Stripe would, with an empty ``request`` (no API request caused them).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from webhooks.standin.payment_methods import TEST_CARDS
from webhooks.standin.schema import StripeError
from webhooks.standin.state import Obj, Store

FaultStatus = int | Literal["timeout", "lost"]
HOLD_LIMIT_SECONDS = 60.0


@dataclass
class Fault:
    """One failure rule: ``remaining`` requests (None: until cleared) matching method and path."""

    status: FaultStatus
    path_prefix: str | None = None
    method: str | None = None
    remaining: int | None = 1
    should_retry: bool | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, Stripe error body and extra headers of this failure (not for timeouts)."""
        assert isinstance(self.status, int)
        headers = {}
        if self.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        if self.status == 429:
            error = StripeError(
                429,
                "invalid_request_error",
                "Too many requests hit the API too quickly (stand-in injected).",
                code="rate_limit",
            )
        else:
            error = StripeError(
                self.status,
                "api_error",
                "An unknown error occurred (stand-in injected failure).",
            )
        return self.status, error.body(), headers


class FaultInjector:
    """Failure rules consulted once per API request; thread-safe."""

    def __init__(self, *, timeout_seconds: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._outage: Fault | None = None
        self.timeout_seconds = timeout_seconds
        self.injected: Counter[str] = Counter()
        self.delay_seconds = 0.0
        self._delayed_now = 0
        self._holds: list[Hold] = []

    def delay_answers(self, seconds: float) -> None:
        """Hold every API request ``seconds`` before it is handled: a slow Stripe (0: off)."""
        if seconds < 0:
            raise ValueError(f"delay must not be negative, not {seconds!r}")
        self.delay_seconds = seconds

    @property
    def delayed_now(self) -> int:
        """How many requests are being held by the delay right now."""
        with self._lock:
            return self._delayed_now

    def wait_out_delay(self) -> None:
        """Hold the calling request thread for the configured delay, counted while it waits."""
        seconds = self.delay_seconds
        if not seconds:
            return
        with self._lock:
            self._delayed_now += 1
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._delayed_now -= 1

    def hold_next(self, *, method: str | None = None, path_prefix: str | None = None) -> Hold:
        """Hold the next matching request until ``release()`` (at most ``HOLD_LIMIT_SECONDS``)."""
        hold = Hold(method, path_prefix)
        with self._lock:
            self._holds.append(hold)
        return hold

    def wait_out_hold(self, method: str, path: str) -> None:
        with self._lock:
            hold = next((h for h in self._holds if h.matches(method, path)), None)
            if hold is not None:
                self._holds.remove(hold)
        if hold is not None:
            hold.arrived.set()
            hold.released.wait(HOLD_LIMIT_SECONDS)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: FaultStatus = 500,
        path_prefix: str | None = None,
        method: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Fail the next ``count`` matching requests with ``status`` (or ``"timeout"``)."""
        _check_status(status)
        with self._lock:
            self._rules.append(Fault(status, path_prefix, method, count, should_retry))

    def start_outage(self, *, status: FaultStatus = 500, path_prefix: str | None = None) -> None:
        """Fail every matching request until ``end_outage``."""
        _check_status(status)
        with self._lock:
            self._outage = Fault(status, path_prefix, None, None)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._outage = None
            for hold in self._holds:
                hold.release()
            self._holds.clear()

    @property
    def is_outage(self) -> bool:
        return self._outage is not None

    def take(self, method: str, path: str) -> Fault | None:
        """The failure this request gets, if any (consumes one use of a counted rule)."""
        with self._lock:
            if self._outage is not None and self._outage.matches(method, path):
                self.injected[str(self._outage.status)] += 1
                return self._outage
            for rule in self._rules:
                if rule.matches(method, path):
                    assert rule.remaining is not None
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    self.injected[str(rule.status)] += 1
                    return rule
        return None


def _check_status(status: FaultStatus) -> None:
    if status not in ("timeout", "lost") and not (isinstance(status, int) and 400 <= status <= 599):
        raise ValueError(f"fault status must be 400-599, 'timeout' or 'lost', not {status!r}")


@dataclass
class Hold:
    """One request held before it is carried out: ``arrived`` is set when it comes, and it goes
    on (Stripe does it, whoever still listens) after ``release()``."""

    method: str | None
    path_prefix: str | None
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )

    def release(self) -> None:
        self.released.set()


class Dashboard:
    """Actions as if taken in the Stripe dashboard; each returns the changed object."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _run(self, action: Any, *args: Any, **kwargs: Any) -> Obj:
        store = self._store
        with store.lock, store.request_scope(None, None):
            return copy.deepcopy(action(*args, **kwargs))

    # refunds and disputes
    def refund_charge(
        self, charge_id: str, amount: int | None = None, reason: str | None = None
    ) -> Obj:
        store = self._store
        return self._run(
            lambda: store.refund_charge(
                store.get("charge", charge_id), amount=amount, reason=reason
            )
        )

    def fail_refund(self, refund_id: str, reason: str = "lost_or_stolen_card") -> Obj:
        return self._run(self._store.fail_refund, refund_id, reason)

    def update_refund(self, refund_id: str, metadata: dict[str, str]) -> Obj:
        return self._run(self._store.update_refund, refund_id, {"metadata": metadata})

    def open_dispute(
        self, charge_id: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> Obj:
        return self._run(self._store.open_dispute, charge_id, amount=amount, reason=reason)

    def close_dispute(self, dispute_id: str, won: bool = False) -> Obj:
        return self._run(self._store.close_dispute, dispute_id, won=won)

    # invoices
    def void_invoice(self, invoice_id: str) -> Obj:
        return self._run(self._store.void_invoice, invoice_id)

    def mark_uncollectible(self, invoice_id: str) -> Obj:
        return self._run(self._store.mark_uncollectible, invoice_id)

    def mark_invoice_paid(self, invoice_id: str) -> Obj:
        """Paid outside Stripe ("mark as paid" in the dashboard): ``invoice.paid``, no charge."""
        return self._run(self._store.pay_invoice, invoice_id, {"paid_out_of_band": True})

    def collect_invoice(self, invoice_id: str) -> Obj:
        """Stripe's automatic collection attempt now: paid, or ``invoice.payment_failed``."""
        return self._run(self._store.attempt_collection, invoice_id)

    def fail_invoice_payment(self, invoice_id: str) -> Obj:
        """A collection attempt that the card declines, whatever the decline settings."""
        store = self._store

        def decline() -> Obj:
            store.declines_left += 1
            return store.attempt_collection(invoice_id)

        return self._run(decline)

    def update_invoice(self, invoice_id: str, **fields: Any) -> Obj:
        return self._run(self._store.update_invoice, invoice_id, fields)

    def update_invoice_item(self, item_id: str, **fields: Any) -> Obj:
        return self._run(self._store.update_invoice_item, item_id, fields)

    def create_credit_note(self, invoice_id: str, **fields: Any) -> Obj:
        return self._run(self._store.create_credit_note, {"invoice": invoice_id, **fields})

    # catalog
    def archive_price(self, price_id: str) -> Obj:
        return self._run(self._store.update_price, price_id, {"active": False})

    def change_price_amount(self, price_id: str, unit_amount: int) -> Obj:
        """Prices are immutable: a new price takes over (lookup key, product default) and the
        old one is archived. Returns the new price."""
        return self._run(self._store.replace_price, price_id, unit_amount)

    def archive_product(self, product_id: str) -> Obj:
        return self._run(self._store.update_product, product_id, {"active": False})

    def update_product(self, product_id: str, **fields: Any) -> Obj:
        return self._run(self._store.update_product, product_id, fields)

    # customers
    def update_customer(self, customer_id: str, **fields: Any) -> Obj:
        return self._run(self._store.update_customer, customer_id, fields)

    def delete_customer(self, customer_id: str) -> Obj:
        return self._run(self._store.delete_customer, customer_id)

    # ways to pay
    def attach_card(
        self, customer_id: str, card: str = "tok_visa", make_default: bool = True
    ) -> Obj:
        """A person adds a card to the customer (and makes it the one invoices are paid with):
        ``payment_method.attached``, then ``customer.updated``. Returns the payment method."""
        store = self._store

        def attach() -> Obj:
            if card not in TEST_CARDS:
                raise ValueError(f"unknown test card {card!r}: one of {', '.join(TEST_CARDS)}")
            method = store.new_card(TEST_CARDS[card])
            store.attach_payment_method(method["id"], {"customer": customer_id})
            if make_default:
                store.update_customer(
                    customer_id, {"invoice_settings": {"default_payment_method": method["id"]}}
                )
            return method

        return self._run(attach)

    def detach_payment_method(self, payment_method_id: str) -> Obj:
        return self._run(self._store.detach_payment_method, payment_method_id)

    def save_portal_settings(self, default_return_url: str | None = None) -> Obj:
        """Saving the customer portal settings in the dashboard: the account's default
        portal configuration (one the API never makes)."""
        params: dict[str, Any] = {
            "features": {
                "invoice_history": {"enabled": True},
                "payment_method_update": {"enabled": True},
            }
        }
        if default_return_url:
            params["default_return_url"] = default_return_url
        return self._run(self._store.create_portal_configuration, params, is_default=True)

    # payment outcomes
    def decline_payments(self, customer_id: str, enabled: bool = True) -> Obj:
        """Make every charge of this customer fail (``card_declined``) until disabled."""
        store = self._store
        with store.lock:
            if enabled:
                store.declined_customers.add(customer_id)
            else:
                store.declined_customers.discard(customer_id)
            return {"customer": customer_id, "declined": enabled}

    def decline_next_payments(self, count: int = 1) -> Obj:
        """Make the next ``count`` charges fail, whoever the customer."""
        store = self._store
        with store.lock:
            store.declines_left = count
            return {"declines_left": count}


class HostedPages:
    """What a customer does on the pages Stripe hosts (Checkout, the hosted invoice page, the
    customer portal): each emits the events Stripe would, with an empty ``request``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _run(self, action: Any, *args: Any, **kwargs: Any) -> Obj:
        store = self._store
        with store.lock, store.request_scope(None, None):
            return copy.deepcopy(action(*args, **kwargs))

    def complete_checkout(self, session_id: str, card: str = "tok_visa") -> Obj:
        """The customer enters ``card`` (a test token) on the Checkout page and confirms."""
        return self._run(self._store.complete_checkout, session_id, card=card)

    def pay_invoice(self, invoice_id: str, method: str = "wechat_pay") -> Obj:
        """The customer pays on the hosted invoice page (``wechat_pay`` or ``card``)."""
        return self._run(self._store.pay_on_hosted_page, invoice_id, method=method)

    def replace_card(self, portal_session_id: str, card: str = "tok_mastercard") -> Obj:
        """In the portal, the customer replaces the card its invoices are paid with."""
        return self._run(self._store.portal_replace_card, portal_session_id, card=card)

    def page(self, object_id: str) -> Obj | None:
        """The object a hosted page shows (a session, an invoice), or None."""
        store = self._store
        with store.lock:
            obj = store.find(object_id)
            if obj is not None and obj.get("object") == "checkout.session":
                obj = store.checkout_session(object_id)
            return copy.deepcopy(obj) if obj is not None else None


HOSTED_ACTIONS = {
    ("checkout", "complete"): "complete_checkout",
    ("hosted", "pay"): "pay_invoice",
    ("portal", "replace_card"): "replace_card",
}
"""``POST /_standin/<page>/<id>/<action>``: what a customer does on a hosted page."""


# Dashboard actions reachable over HTTP at POST /_standin/dashboard/{action}.
DASHBOARD_ACTIONS = frozenset(
    name for name in vars(Dashboard) if not name.startswith("_") and callable(vars(Dashboard)[name])
)
