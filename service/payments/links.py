"""Payment-setup links: ``<public url>/v1/pay/setup/<token>``, where a merchant saves a way to pay.

A merchant opens the link in a browser, without an API key: the token is the credential. It is
unguessable (32 random bytes), names its merchant (so a look-up goes to that merchant's rows
only, one shard on Citus) and is stored as its SHA-256 only, like an API key: it is shown once,
in the answer that made it (signup, ``POST /v1/merchants/me/payment-setup``, a
``payment_method.required`` event).

Re-use and expiry: a link works for ``BILLING_PAYMENT_SETUP_LINK_DAYS`` (30) days and until a
way to pay is saved through it. Opening it again while its Checkout Session is open goes to
the same session; once that session has expired (Stripe's last 24 hours) the next opening makes
a new one. A used or expired link answers 410 and says how to get a new one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from service.db.engine import current as current_database
from service.db.engine import transaction_connection
from service.db.tables import PaymentSetupLink
from service.errors import BillingError, NotFound
from service.settings import PaymentSettings

_TOKEN: Final = re.compile(r"^ps_(?P<merchant>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{43})$")

SESSION_MARGIN: Final = timedelta(minutes=5)
"""A Checkout Session this close to its end is not handed out again: a new one is made."""


class LinkGone(BillingError):
    slug = "payment-link-gone"
    status = 410
    title = "This payment link no longer works"


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A link just made: its URL holds the token, shown this once."""

    id: UUID
    url: str
    expires_at: datetime


class _Config:
    """The addresses links are made with (``configure`` at process start)."""

    settings = PaymentSettings()


def configure(settings: PaymentSettings) -> None:
    _Config.settings = settings


def settings() -> PaymentSettings:
    return _Config.settings


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_INSERT = """
INSERT INTO payment_setup_links (merchant_id, token_hash, success_url, cancel_url, created_at,
    expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id
"""


async def issue(
    merchant_id: UUID,
    *,
    now: datetime,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> IssuedLink:
    """A new link for the merchant, in the caller's transaction. The Checkout page sends the
    merchant back to ``success_url`` / ``cancel_url`` (our own pages unless given)."""
    config = _Config.settings
    token = f"ps_{merchant_id.hex}_{secrets.token_urlsafe(32)}"
    expires_at = now + timedelta(days=config.link_days)
    link_id = await transaction_connection().fetchval(
        _INSERT,
        merchant_id,
        _hash(token),
        success_url or config.setup_success_url,
        cancel_url or config.setup_cancel_url,
        now,
        expires_at,
    )
    return IssuedLink(
        id=link_id, url=f"{config.public_url}/v1/pay/setup/{token}", expires_at=expires_at
    )


NEW_LINK_HINT: Final = (
    "ask for a new one: POST /v1/merchants/me/payment-setup with the merchant's API key"
    " (the signup app does it for you)"
)


async def find(token: str, *, now: datetime) -> PaymentSetupLink:
    """The link a token opens: 404 when there is none, 410 when it is used or expired."""
    match = _TOKEN.match(token)
    link = None
    if match is not None:
        link = (
            await PaymentSetupLink.objects()
            .where(PaymentSetupLink.merchant_id == UUID(match["merchant"]))
            .where(PaymentSetupLink.token_hash == _hash(token))
            .first()
        )
    if link is None:
        raise NotFound(
            "no payment link has this address: check that it was copied whole, or " + NEW_LINK_HINT
        )
    if link.completed_at is not None:
        raise LinkGone(
            "a way to pay was saved through this link already; to change it, open the billing"
            " portal (POST /v1/merchants/me/billing-portal), or " + NEW_LINK_HINT
        )
    if link.expires_at <= now:
        raise LinkGone(f"this payment link expired on {link.expires_at:%Y-%m-%d}: " + NEW_LINK_HINT)
    return link


def open_session_url(link: PaymentSetupLink, *, now: datetime) -> str | None:
    """The Checkout page the link opened last, while it stays open long enough to use."""
    expires_at = link.checkout_expires_at
    if link.checkout_url and expires_at is not None and expires_at - SESSION_MARGIN > now:
        return str(link.checkout_url)
    return None


# Only the opening that made session number ``$3`` records it: two openings at once make the
# same session (the same idempotency key), and one of them records it.
_RECORD_SESSION = """
UPDATE payment_setup_links
SET sessions_made = $3, checkout_session_id = $4, checkout_url = $5, checkout_expires_at = $6
WHERE merchant_id = $1 AND id = $2 AND sessions_made = $3 - 1
"""


async def record_session(
    link: PaymentSetupLink,
    *,
    number: int,
    session_id: str,
    url: str,
    expires_at: datetime,
) -> None:
    await current_database().pool.execute(
        _RECORD_SESSION, link.merchant_id, link.id, number, session_id, url, expires_at
    )


_COMPLETED = """
UPDATE payment_setup_links SET completed_at = $3
WHERE merchant_id = $1 AND id = $2 AND completed_at IS NULL
"""


async def mark_completed(merchant_id: UUID, link_id: UUID, *, at: datetime) -> None:
    """The link's Checkout Session saved a way to pay: the link is used (caller's
    transaction)."""
    await transaction_connection().execute(_COMPLETED, merchant_id, link_id, at)
