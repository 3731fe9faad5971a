"""Tenants never meet: merchant A's key gets 404 on everything of merchant B.

The test walks every route of the app, so a route added later without tenant scoping fails here
until it is either proven scoped (an id of B in ``ids_of_b`` and, for writes, a valid body in
``BODIES``) or marked operator-only.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar
from litestar.routes import HTTPRoute

from service.tenancy.auth import operator_only
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import close_pass

# A valid body for each write route, so the request reaches the tenant lookup (not validation).
_SUB = "/v1/subscriptions/{subscription_id:uuid}"
BODIES: dict[tuple[str, str], Any] = {
    ("POST", f"{_SUB}/change-plan"): {"plan": "advanced"},
    ("POST", f"{_SUB}/change-quote"): {"plan": "advanced"},
    ("POST", f"{_SUB}/cancel"): {"at_period_end": False},
    ("POST", f"{_SUB}/add-ons"): {"addons": ["tooling_bundle"]},
}

PUBLIC_PREFIXES = ("/schema", "/static", "/metrics", "/healthz", "/readyz", "/pay/")
# A payment-setup link is opened without a key: its token is the credential (and names its
# merchant); what it opens is proven in test_payment_setup.py, tokens of another merchant
# included.
PAYMENT_LINKS = "/v1/pay/setup/"
# Reference data that is the same for every merchant (the published catalog).
SHARED_ROUTES = {"/v1/plans/{code:str}"}
# Operator pages that authenticate themselves (bearer key or session cookie) and refuse a
# merchant key with 403, like operator-only routes.
OPERATOR_PAGES = ("/finance/",)


def _merchant_routes(app: Litestar) -> list[tuple[str, str, Any]]:
    found = []
    for route in app.routes:
        if (
            not isinstance(route, HTTPRoute)
            or route.path.startswith((*PUBLIC_PREFIXES, PAYMENT_LINKS))
            or route.path in SHARED_ROUTES
        ):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                found.append((method, route.path, handler))
    return found


def _is_operator_only(handler: Any) -> bool:
    return any(operator_only in (layer.guards or ()) for layer in handler.ownership_layers)


async def ids_of_b(client: AsyncClient, operator: Tenant) -> tuple[Tenant, dict[str, str]]:
    """Merchant B, made through signup, and one of its ids per path parameter name."""
    b, subscription = await signup_tenant(client, operator, plan="basic", name="Shop B")
    created = await client.post("/v1/api-keys", json={"name": "b's"}, headers=b.headers)
    assert created.status_code == 201
    usage = await client.post(
        "/v1/usage/events",
        json={
            "transaction_id": f"b-order-{uuid.uuid4().hex}",
            "metric": "orders",
            "occurred_at": subscription["current_period_start"],
            "quantity": 1,
        },
        headers=b.headers,
    )
    assert usage.status_code == 201, usage.text
    await close_pass(b.merchant_id)  # B's first invoice: the first month's fee
    invoice = await client.get("/v1/invoices", headers=b.headers)
    invoice_id = invoice.json()[0]["id"]
    endpoint = await client.post(  # B's own webhook endpoint (never called in these tests)
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.shop-b.example/kefu", "events": ["invoice.paid"]},
        headers=b.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    return b, {
        "endpoint_id": endpoint.json()["id"],
        "invoice_ref": invoice_id,
        "invoice_id": invoice_id,
        "merchant_id": str(b.merchant_id),
        "key_id": created.json()["id"],
        "subscription_id": subscription["id"],
        "transaction_id": usage.json()["transaction_id"],
    }


async def test_every_merchant_route_with_an_id_answers_404_for_another_merchants_id(
    client: AsyncClient, app: Litestar, tenant: Tenant, operator: Tenant
) -> None:
    _, ids = await ids_of_b(client, operator)
    checked = []
    for method, path, handler in _merchant_routes(app):
        params = re.findall(r"\{(\w+):\w+\}", path)
        if not params:
            continue
        if _is_operator_only(handler) or path.startswith(OPERATOR_PAGES):
            url = re.sub(r"\{(\w+):\w+\}", lambda m: str(uuid.uuid4()), path)
            response = await client.request(
                method, url, headers=tenant.headers, json=BODIES.get((method, path))
            )
            assert response.status_code == 403, (method, path, response.text)
            continue
        missing = [p for p in params if p not in ids]
        assert not missing, f"{method} {path}: add an id of merchant B for {missing} to ids_of_b"
        url = re.sub(r"\{(\w+):\w+\}", lambda m: ids[m.group(1)], path)
        response = await client.request(
            method, url, headers=tenant.headers, json=BODIES.get((method, path))
        )
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        checked.append((method, path))
    assert ("DELETE", "/v1/api-keys/{key_id:uuid}") in checked
    assert ("POST", f"{_SUB}/change-plan") in checked
    assert ("GET", "/v1/invoices/{invoice_ref:str}") in checked
    assert ("POST", "/v1/usage/events/{transaction_id:str}/void") in checked
    assert ("DELETE", "/v1/webhook-endpoints/{endpoint_id:uuid}") in checked


async def test_merchant_lists_never_show_another_merchant(
    client: AsyncClient, app: Litestar, tenant: Tenant, operator: Tenant
) -> None:
    other_tenant, ids = await ids_of_b(client, operator)
    for method, path, handler in _merchant_routes(app):
        if method != "GET" or "{" in path or _is_operator_only(handler):
            continue
        response = await client.get(
            path, params={"merchant_id": str(other_tenant.merchant_id)}, headers=tenant.headers
        )
        assert response.status_code < 500, (path, response.text)
        for value in ids.values():
            assert value not in response.text, (path, "leaks an id of merchant B")


@pytest.mark.parametrize("path", ["/v1/merchants/me", "/v1/api-keys"])
async def test_merchant_reads_are_its_own(client: AsyncClient, tenant: Tenant, path: str) -> None:
    response = await client.get(path, headers=tenant.headers)
    assert response.status_code == 200
    assert str(tenant.merchant_id) in response.text


async def test_another_merchants_invoice_document_is_404(
    client: AsyncClient, tenant: Tenant, operator: Tenant
) -> None:
    _, ids = await ids_of_b(client, operator)
    page = await client.get(f"/v1/invoices/{ids['invoice_ref']}.html", headers=tenant.headers)
    assert page.status_code == 404
    assert "<html" not in page.text
