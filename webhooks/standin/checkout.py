"""Checkout Sessions of the stand-in account, in ``setup`` mode: a hosted page where a customer
saves a way to pay.

A session is ``open`` until the customer completes it (``complete_checkout``, driven by the
control routes as the customer would on Stripe's page: the card is attached to the customer,
a succeeded SetupIntent records it, ``checkout.session.completed`` announces it) or it expires
(24 hours by default, ``checkout.session.expired``). Stripe's refusals of setup-mode sessions
apply: a ``success_url`` for the hosted page, a ``currency`` unless ``payment_method_types`` is
given, no ``line_items``, ``expires_at`` between 30 minutes and 24 hours ahead. This stand-in
makes setup-mode, hosted sessions only.
"""

from __future__ import annotations

from webhooks.standin import objects
from webhooks.standin.account import Account, Obj, Params, currency_code, merge_metadata
from webhooks.standin.payment_methods import TEST_CARDS, PaymentMethods
from webhooks.standin.schema import invalid
from webhooks.standin.setup_intents import SetupIntents

SESSION_LIFETIME_SECONDS = 24 * 3600
SHORTEST_LIFETIME_SECONDS = 30 * 60


class CheckoutSessions(PaymentMethods, SetupIntents, Account):
    """Checkout Sessions in setup mode and their completion."""

    def create_checkout_session(self, params: Params) -> Obj:
        mode = params.get("mode")
        if mode is None:
            raise invalid("Missing required param: mode.", param="mode", code="parameter_missing")
        if mode != "setup" or params.get("ui_mode", "hosted") != "hosted":
            raise invalid(
                "The stand-in makes hosted Checkout Sessions in setup mode only.", param="mode"
            )
        if "success_url" not in params:
            raise invalid(
                "Missing required param: success_url.",
                param="success_url",
                code="parameter_missing",
            )
        if "line_items" in params:
            raise invalid("You can not pass `line_items` in `setup` mode.", param="line_items")
        kinds = params.get("payment_method_types")
        if kinds is None and "currency" not in params:
            raise invalid(
                "Missing required param: currency. It is required in setup mode when"
                " payment_method_types is not set.",
                param="currency",
                code="parameter_missing",
            )
        if kinds is not None and set(kinds) - {"card"}:
            raise invalid(
                "The stand-in saves cards only in setup mode (payment_method_types=card).",
                param="payment_method_types",
            )
        customer_id = params.get("customer")
        customer = self._live("customer", customer_id, param="customer") if customer_id else None
        now = self.now()
        expires_at = params.get("expires_at", now + SESSION_LIFETIME_SECONDS)
        if not now + SHORTEST_LIFETIME_SECONDS <= expires_at <= now + SESSION_LIFETIME_SECONDS:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from the"
                " time of Session creation.",
                param="expires_at",
            )
        session_id = objects.new_id("checkout.session")
        session = self._new(
            "checkout.session",
            id=session_id,
            cancel_url=params.get("cancel_url"),
            client_reference_id=params.get("client_reference_id"),
            currency=currency_code(params["currency"]) if "currency" in params else None,
            customer=customer_id,
            customer_email=customer["email"] if customer else params.get("customer_email"),
            expires_at=expires_at,
            metadata=merge_metadata({}, params.get("metadata", {})),
            mode="setup",
            payment_method_types=kinds or ["card"],
            payment_status="no_payment_required",
            setup_intent=None,
            status="open",
            success_url=params["success_url"],
            ui_mode="hosted",
            url=f"{self.base_url}/_standin/checkout/{session_id}",
        )
        intent_data = params.get("setup_intent_data") or {}
        self._setup_intent_metadata[session_id] = dict(intent_data.get("metadata") or {})
        return session

    def checkout_session(self, session_id: str) -> Obj:
        """A session as it is now: one past its ``expires_at`` has expired."""
        session = self.get("checkout.session", session_id)
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            session["status"] = "expired"
            session["url"] = None
            self.emit("checkout.session.expired", session)
        return session

    def expire_checkout_session(self, session_id: str) -> Obj:
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise invalid(
                f'Only Checkout Sessions with a status in ["open"] can be expired (this one is'
                f" {session['status']}).",
                param="session",
            )
        session["status"] = "expired"
        session["url"] = None
        self.emit("checkout.session.expired", session)
        return session

    def complete_checkout(self, session_id: str, *, card: str = "tok_visa") -> Obj:
        """The customer enters ``card`` (a test token) on the session's page and confirms."""
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise invalid(f"This Checkout Session is {session['status']}: it cannot be completed.")
        if card not in TEST_CARDS:
            raise invalid(f"Unknown test card {card!r}: one of {', '.join(TEST_CARDS)}")
        customer_id = session["customer"]
        method = self.new_card(TEST_CARDS[card])
        if customer_id is not None:
            self.attach_payment_method(method["id"], {"customer": customer_id})
        intent = self.succeeded_setup_intent(
            customer=customer_id,
            payment_method=method,
            metadata=self._setup_intent_metadata.get(session_id, {}),
        )
        session["setup_intent"] = intent["id"]
        session["status"] = "complete"
        session["url"] = None
        self.emit("checkout.session.completed", session)
        return session
