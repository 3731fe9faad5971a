"""The API reference renders every operation (Swagger UI 5, OpenAPI 3.1, assets served here)
and says what each does, with example bodies and problem+json errors; Prometheus metrics are
exposed."""

import asyncio
import re
from typing import Any
from uuid import uuid4

import pytest
from httpx import AsyncClient

from service.errors import PROBLEM_BASE
from service.openapi import API_VERSION
from tests.integration.cdp import browser_page, chromium_path
from tests.integration.conftest import Tenant, make_tenant

METHODS = ("get", "put", "post", "delete", "patch")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest.fixture(scope="module")
async def spec(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def test_openapi_document_lists_the_api(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    assert "/v1/merchants/me" in spec["paths"]
    assert "/v1/api-keys" in spec["paths"]
    assert spec["info"]["version"] == API_VERSION


async def test_every_operation_says_what_it_does_in_plain_words(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) >= 45
    for method, path, operation in operations:
        summary = operation.get("summary", "")
        assert summary, (method, path)
        assert not re.fullmatch(r"(?:[A-Z][a-z]+){2,}", summary), (method, path, summary)
        assert " " in summary or summary.endswith("?"), (method, path, summary)
        assert len(operation.get("description", "")) >= 20, (method, path)


async def test_every_error_answer_is_problem_json_with_its_types(spec: dict[str, Any]) -> None:
    seen_types: set[str] = set()
    for method, path, operation in _operations(spec):
        for status, answer in operation["responses"].items():
            if int(status) < 400:
                continue
            assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
            schema = answer["content"]["application/problem+json"]["schema"]
            types = schema["allOf"][1]["properties"]["type"]["enum"]
            assert types, (method, path, status)
            assert all(t.startswith(PROBLEM_BASE) for t in types)
            assert all(t.removeprefix(PROBLEM_BASE) in answer["description"] for t in types)
            seen_types.update(types)
    assert PROBLEM_BASE + "invalid-transition" in seen_types
    assert PROBLEM_BASE + "validation-error" in seen_types
    assert "Problem" in spec["components"]["schemas"]


async def test_every_write_with_a_body_has_an_example_the_api_accepts(
    client: AsyncClient, spec: dict[str, Any], operator: Tenant
) -> None:
    merchant = await make_tenant("Docs example shop")
    checked = []
    for method, path, operation in _operations(spec):
        if "requestBody" not in operation:
            continue
        (media,) = operation["requestBody"]["content"].values()
        example = media["examples"]["example"]["value"]
        url = re.sub(r"\{\w+\}", lambda _: str(uuid4()), path)
        # Signup requires an Idempotency-Key header (a documented, required parameter).
        required = {"Idempotency-Key": str(uuid4())}
        answer = await client.request(
            method, url, json=example, headers={**operator.headers, **required}
        )
        if answer.status_code == 403:  # a merchant's route: the merchant's key
            answer = await client.request(
                method, url, json=example, headers={**merchant.headers, **required}
            )
        # The body is read before anything is looked up: a 404 for the made-up ids in the path
        # (or a 409: no Stripe key here)
        # means the example passed; a 400 would be the example's own fault.
        assert answer.status_code < 400 or answer.status_code in (404, 409, 422), (
            method, path, answer.status_code, answer.text)  # fmt: skip
        if answer.status_code == 422:  # only: the made-up merchant has no subscription
            assert "subscription" in answer.json()["detail"], (path, answer.text)
        checked.append((method, path))
    assert ("POST", "/v1/signup") in checked
    assert ("POST", "/v1/usage/events/batch") in checked
    assert len(checked) >= 18


@pytest.mark.skipif(chromium_path() is None, reason="chromium missing: make test installs it")
async def test_the_reference_renders_every_operation_in_chromium(
    spec: dict[str, Any], served_url: str
) -> None:
    expected = sorted(f"{method} {path}" for method, path, _ in _operations(spec))
    async with browser_page() as page:
        await page.goto(f"{served_url}/schema")
        rendered: list[str] = []
        for _ in range(200):  # Swagger UI renders after its own fetch of the document
            rendered = await page.evaluate(
                "[...document.querySelectorAll('.opblock')].map(op =>"
                " op.querySelector('.opblock-summary-method').textContent + ' ' +"
                " op.querySelector('.opblock-summary-path').dataset.path)"
            )
            if len(rendered) >= len(expected):
                break
            await asyncio.sleep(0.05)
        text = await page.evaluate("document.body.innerText")
        requested = [
            event["params"]["request"]["url"]
            for event in page.events
            if event.get("method") == "Network.requestWillBeSent"
        ]
    assert "Unable to render this definition" not in text
    assert sorted(rendered) == expected
    assert "Kefu Billing API" in text
    assert all(url.startswith(served_url) or url.startswith("data:") for url in requested)


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
