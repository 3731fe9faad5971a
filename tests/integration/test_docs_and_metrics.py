"""API docs work offline (assets served here) and Prometheus metrics are exposed."""

import re
from uuid import uuid4

from httpx import AsyncClient

from tests.integration.conftest import Tenant, make_tenant


async def test_openapi_document_lists_the_api(client: AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/merchants/me" in spec["paths"]
    assert "/v1/api-keys" in spec["paths"]


async def test_docs_page_loads_its_assets_from_this_service(client: AsyncClient) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    asset_urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert asset_urls, "the docs page should reference its scripts and styles"
    for url in asset_urls:
        assert url.startswith("/static/"), f"{url} would need the internet"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 200, url


async def test_metrics_count_requests_by_route_and_status(
    client: AsyncClient, tenant: Tenant
) -> None:
    await client.get("/v1/merchants/me", headers=tenant.headers)
    await client.get("/v1/merchants/me")  # 401
    metrics = (await client.get("/metrics")).text
    assert re.search(
        r'billing_requests_total\{[^}]*method="GET"[^}]*path="/v1/merchants/me"[^}]*status_code="200"',
        metrics,
    )
    assert re.search(r'billing_requests_total\{[^}]*status_code="401"', metrics)
    assert "billing_request_duration_seconds_bucket" in metrics


async def test_metrics_label_routes_by_template_and_count_refusals(client: AsyncClient) -> None:
    reader = await make_tenant("Metrics reader", scopes=["billing:read"])
    missing = uuid4()
    assert (await client.get(f"/v1/invoices/{missing}", headers=reader.headers)).status_code == 404
    refused = await client.post("/v1/usage/events", json={}, headers=reader.headers)
    assert refused.status_code == 403  # no usage:write: refused by the key check
    assert refused.headers["x-request-id"]
    metrics = (await client.get("/metrics")).text
    assert str(missing) not in metrics  # ids never become label values
    assert re.search(
        r'billing_requests_total\{method="GET",path="/v1/invoices/\{[^"]+\}",status_code="404"\}',
        metrics,
    )
    assert re.search(
        r'billing_requests_total\{method="POST",path="/v1/usage/events",status_code="403"\} '
        r"[1-9]",
        metrics,
    )
    assert re.search(r'billing_request_duration_seconds_count\{method="POST"', metrics)
