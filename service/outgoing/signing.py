"""Signing deliveries the way Stripe signs its webhooks, so integrators reuse the same code.

``Kefu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>``. The
secret is the whole ``whsec_...`` string, as Stripe's libraries use theirs. ``t`` is the real
time the request leaves (the receiver compares it with its own clock to refuse replays), never
the worker's scheduling clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

SIGNATURE_HEADER: Final = "Kefu-Signature"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret


class SigningSecret(str):
    """An endpoint's secret: a ``str`` that never shows itself in a ``repr`` (a log line or a
    traceback that renders it says ``SigningSecret('***')``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SigningSecret('***')"


def new_secret() -> SigningSecret:
    return SigningSecret(SECRET_PREFIX + secrets.token_urlsafe(32))


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Kefu-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"
