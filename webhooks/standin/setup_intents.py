"""SetupIntents of the stand-in account: the record that a customer saved a way to pay.

Checkout makes one when a customer completes a session in ``setup`` mode; its
``payment_method`` is the card saved. Stripe announces ``setup_intent.created`` and
``setup_intent.succeeded``; it never makes the card the customer's invoice default by itself
(the integration does, with ``customers.update``).
"""

from __future__ import annotations

import secrets

from webhooks.standin.account import Account, Obj


class SetupIntents(Account):
    """SetupIntents (made by Checkout; read through the API)."""

    def succeeded_setup_intent(
        self, *, customer: str | None, payment_method: Obj, metadata: dict[str, str]
    ) -> Obj:
        intent = self._new(
            "setup_intent",
            automatic_payment_methods=None,
            client_secret="",
            customer=customer,
            flow_directions=None,
            metadata=dict(metadata),
            payment_method=None,
            payment_method_types=[payment_method["type"]],
            status="requires_payment_method",
            usage="off_session",
        )
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(12)}"
        self.emit("setup_intent.created", intent)
        intent["payment_method"] = payment_method["id"]
        intent["status"] = "succeeded"
        self.emit("setup_intent.succeeded", intent)
        return intent
