"""API docs work offline (assets served here) and Prometheus metrics are exposed."""

import re

from httpx import AsyncClient

from tests.integration.conftest import Tenant


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
