# ruff: noqa: F811 - the Stripe fixtures are imported from stripe_helpers
"""Catalog and customers in Stripe: products and prices pushed at publish, dashboard edits to
them reported (never repricing a plan), merchant edits pushed to the customer, dashboard edits
of the customer reported."""

from __future__ import annotations

import httpx

from service.catalog import store as catalog_store
from service.db.tables import Merchant, StripeCatalogMap
from tests.integration.conftest import Tenant
from tests.integration.stripe_helpers import (  # noqa: F401 - fixtures
    Sync,
    relay,
    standin,
    stripe_app,
    stripe_client,
    stripe_objects,
    stripe_settings,
    sync,
)
from tests.integration.test_stripe_sync import invoiced_merchant


async def test_published_plans_become_products_and_dashboard_edits_are_reported(
    sync: Sync,
) -> None:
    sync.include_catalog = True
    await sync.settle()
    basic = (
        await StripeCatalogMap.objects()
        .where(StripeCatalogMap.item_kind == "plan")
        .where(StripeCatalogMap.code == "basic")
        .first()
    )
    assert basic is not None
    assert basic.stripe_price_id
    assert basic.unit_amount_minor == 9900
    plans = await StripeCatalogMap.count().where(StripeCatalogMap.item_kind == "plan")
    assert plans == len((await catalog_store.current()).plans)
    price = sync.standin.sdk_client().v1.prices.retrieve(basic.stripe_price_id)
    assert (price.unit_amount, price.currency, price.recurring.interval) == (9900, "cny", "month")

    sync.standin.dashboard.change_price_amount(basic.stripe_price_id, 12_900)
    await sync.settle()
    basic = await StripeCatalogMap.objects().where(StripeCatalogMap.id == basic.id).first()
    assert basic is not None
    assert basic.is_active is False
    assert "archived" in (basic.drift or "")
    assert "12900" in (basic.drift or "")
    # Never silently repriced: the plan version still bills what it was published with.
    plan = await catalog_store.plan_version("basic", basic.version)
    assert basic.unit_amount_minor == 9900
    assert plan.code == "basic"


async def test_merchant_edits_reach_the_customer_and_dashboard_edits_do_not_come_back(
    stripe_client: httpx.AsyncClient, operator: Tenant, sync: Sync
) -> None:
    tenant, _ = await invoiced_merchant(stripe_client, operator, sync)
    await sync.settle()
    response = await stripe_client.patch(
        "/v1/merchants/me",
        json={"name": "Renamed shop", "contact_email": "billing@renamed.cn"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    await sync.settle()
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.stripe_customer_id
    customer = sync.standin.sdk_client().v1.customers.retrieve(merchant.stripe_customer_id)
    assert (customer.name, customer.email) == ("Renamed shop", "billing@renamed.cn")
    assert len(stripe_objects(sync.standin, "customer", tenant.merchant_id)) == 1

    sync.standin.dashboard.update_customer(merchant.stripe_customer_id, email="x@elsewhere.cn")
    sync.standin.dashboard.delete_customer(merchant.stripe_customer_id)
    await sync.settle()
    merchant = await Merchant.objects().where(Merchant.id == tenant.merchant_id).first()
    assert merchant is not None
    assert merchant.contact_email == "billing@renamed.cn"
    assert merchant.stripe_customer_id is None
    assert merchant.stripe_customer_deleted_at is not None
