"""Signup: merchant, first API key, subscription and the link where the merchant saves a way to
pay, in one idempotent transaction (the Stripe customer follows through the outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from service import idempotency
from service.catalog import store as catalog_store
from service.db.engine import current as current_database
from service.payments import links, terms
from service.payments.schemas import PaymentSetupOut, PaymentSetupRequest
from service.subscriptions import clocks, contracts, lifecycle
from service.subscriptions.schemas import SignupOut, SignupRequest, SubscriptionOut
from service.tenancy import keys, merchants
from service.tenancy.principal import Actor, Role
from service.tenancy.schemas import ApiKeyIssuedOut, ApiKeyOut, MerchantOut


@dataclass(frozen=True, slots=True)
class SignupResult:
    body: SignupOut
    is_replay: bool


async def signup(
    data: SignupRequest, *, actor: Actor, idempotency_key: str | None, system_now: datetime
) -> SignupResult:
    scope = f"signup:{actor.key_id}"
    fingerprint = idempotency.request_hash(msgspec.to_builtins(data))
    async with current_database().engine.transaction():
        if idempotency_key is not None:
            replay = await idempotency.claim(scope, idempotency_key, fingerprint)
            if replay is not None:
                body = msgspec.convert(replay.body, SignupOut)
                return SignupResult(
                    body=msgspec.structs.replace(body, is_replay=True), is_replay=True
                )
        plan = await catalog_store.plan_version(data.plan, data.plan_version)
        now = system_now
        if data.test_clock_id is not None:
            now = (await clocks.get(data.test_clock_id)).frozen_time
        merchant = await merchants.create(
            name=data.merchant.name,
            contact_email=data.merchant.contact_email,
            timezone=data.merchant.timezone,
            currency=data.merchant.currency,
            actor=actor,
        )
        if data.test_clock_id is not None:
            await clocks.attach(data.test_clock_id, merchant.id)
        if data.payment_terms is not None:
            await terms.set_terms(merchant.id, data.payment_terms, plan=plan, actor=actor)
            merchant = await merchants.get(merchant.id)
        if data.contract_overrides:
            await contracts.set_terms(
                merchant.id,
                data.contract_overrides,
                effective_from=now,
                note="signup",
                actor=actor,
                plan=plan,
            )
        issued = await keys.issue(
            role=Role.MERCHANT,
            merchant_id=merchant.id,
            scopes=None,
            name="first key",
            actor=actor,
        )
        subscription = await lifecycle.start(
            merchant_id=merchant.id,
            merchant_currency=merchant.currency,
            merchant_timezone=merchant.timezone,
            plan=plan,
            addons=data.addons,
            trial_days=data.trial_days,
            now=now,
            actor=actor,
        )
        setup = data.payment_setup or PaymentSetupRequest()
        link = await links.issue(
            merchant.id,
            now=system_now,
            success_url=setup.success_url,
            cancel_url=setup.cancel_url,
        )
        key_out = ApiKeyOut.from_row(issued.row)
        body = SignupOut(
            merchant=MerchantOut.from_row(merchant),
            api_key=ApiKeyIssuedOut(**_fields(key_out), key=issued.secret),
            subscription=SubscriptionOut.from_row(
                subscription,
                pending=await lifecycle.pending_lines(merchant.id, subscription.id),
            ),
            payment_setup=PaymentSetupOut(url=link.url, expires_at=link.expires_at),
        )
        if idempotency_key is not None:
            # The stored answer never holds the key itself, nor the payment link's token:
            # both exist in clear only once.
            await idempotency.remember(
                scope,
                idempotency_key,
                201,
                msgspec.to_builtins(
                    msgspec.structs.replace(body, api_key=None, payment_setup=None)
                ),
            )
    return SignupResult(body=body, is_replay=False)


def _fields(out: Any) -> dict[str, Any]:
    return {name: getattr(out, name) for name in out.__struct_fields__}
