"""Stripe event handlers, by event type. Each is idempotent and safe in any order: it reads the
object's state in the event and never moves our rows backwards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from webhooks.handlers import catalog, charges, customers, invoices, payment_methods
from webhooks.handlers.lookup import NotYet

Handler = Callable[..., Awaitable[str]]

HANDLERS: dict[str, Handler] = {
    **invoices.HANDLERS,
    **charges.HANDLERS,
    **catalog.HANDLERS,
    **customers.HANDLERS,
    **payment_methods.HANDLERS,
}

__all__ = ["HANDLERS", "Handler", "NotYet"]
