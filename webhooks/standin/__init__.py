"""A local Stripe stand-in for tests and the demo: a stateful loopback server the SDK talks to.

It validates requests against the pinned SDK's params types, answers with every field of the
SDK's resource classes, enforces idempotency keys, fails on demand, and sends signed webhooks.
"""

from webhooks.standin.runner import StandIn

__all__ = ["StandIn"]
