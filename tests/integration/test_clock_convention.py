"""One clock convention: every timestamp a response carries is RFC 3339 in UTC with ``Z``.

The test reads the OpenAPI document to learn, for every operation, where its answers hold a
``date-time``; then it calls every operation that answers JSON with a timestamp (on a merchant
whose periods, trial and test clock sit at Shanghai wall times) and checks each of those
values, and every other string in the answer that reads as a timestamp. Text for people is
the merchant's zone, named: the first period's fee says so too."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from httpx import AsyncClient, Response

from service.finance import reconcile
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import close_pass

UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
LOOKS_LIKE_A_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# Operations that answer no JSON of ours: Stripe's webhook receipt, export files.
NOT_JSON = {("POST", "/webhooks/stripe"), ("GET", "/v1/finance/exports/{kind}")}

Path = tuple[str, ...]


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _date_time_paths(
    schema: dict[str, Any], doc: dict[str, Any], path: Path = (), seen: frozenset[str] = frozenset()
) -> Iterator[Path]:
    """Where in an answer of this schema a date-time sits: keys, ``[]`` for list items."""
    ref = schema.get("$ref", "")
    if ref in seen:
        return
    schema = _resolve(schema, doc)
    seen = seen | {ref}
    if schema.get("format") == "date-time":
        yield path
    for key in ("oneOf", "anyOf", "allOf"):
        for option in schema.get(key, []):
            yield from _date_time_paths(option, doc, path, seen)
    for name, member in schema.get("properties", {}).items():
        yield from _date_time_paths(member, doc, (*path, name), seen)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _date_time_paths(schema["additionalProperties"], doc, (*path, "*"), seen)
    if "items" in schema:
        yield from _date_time_paths(schema["items"], doc, (*path, "[]"), seen)


def _values_at(body: Any, path: Path) -> Iterator[Any]:
    if not path:
        yield body
        return
    head, rest = path[0], path[1:]
    if head == "[]" and isinstance(body, list):
        for item in body:
            yield from _values_at(item, rest)
    elif head == "*" and isinstance(body, dict):
        for item in body.values():
            yield from _values_at(item, rest)
    elif isinstance(body, dict) and head in body:
        yield from _values_at(body[head], rest)


def _strings(body: Any) -> Iterator[str]:
    if isinstance(body, str):
        yield body
    elif isinstance(body, dict):
        for value in body.values():
            yield from _strings(value)
    elif isinstance(body, list):
        for value in body:
            yield from _strings(value)


class Walker:
    """Calls operations by their OpenAPI template and checks every timestamp they answer."""

    def __init__(self, client: AsyncClient, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc
        self.checked: set[tuple[str, str]] = set()
        self.timestamps = 0

    def paths_of(self, method: str, template: str, status: int) -> set[Path]:
        operation = self.doc["paths"][template][method.lower()]
        response = operation["responses"].get(str(status), {})
        found: set[Path] = set()
        for content in response.get("content", {}).values():
            found |= set(_date_time_paths(content.get("schema", {}), self.doc))
        return found

    def operations_with_timestamps(self) -> set[tuple[str, str]]:
        wanted = set()
        for template, item in self.doc["paths"].items():
            for method, operation in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                key = (method.upper(), template)
                if key in NOT_JSON:
                    continue
                statuses = [int(s) for s in operation["responses"] if s.startswith("2")]
                if any(self.paths_of(method, template, s) for s in statuses):
                    wanted.add(key)
        return wanted

    async def call(
        self,
        method: str,
        template: str,
        tenant: Tenant,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **path_params: Any,
    ) -> Any:
        url = template.format(**{k: str(v) for k, v in path_params.items()})
        response: Response = await self.client.request(
            method, url, json=json, params=params, headers={**tenant.headers, **(headers or {})}
        )
        assert 200 <= response.status_code < 300, (method, url, response.text)
        body = response.json()
        for path in self.paths_of(method, template, response.status_code):
            for value in _values_at(body, path):
                if value is None:
                    continue
                assert isinstance(value, str), (method, template, path, value)
                assert UTC_Z.match(value), (method, template, path, value)
                self.timestamps += 1
        for text in _strings(body):  # free-form objects: event details, audit changes, runs
            if LOOKS_LIKE_A_TIMESTAMP.match(text) and "T" in text[:11]:
                assert UTC_Z.match(text), (method, template, text)
        self.checked.add((method, template))
        return body


async def test_every_timestamp_in_every_answer_is_utc_with_z(
    client: AsyncClient, operator: Tenant
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    walk = Walker(client, doc)
    wanted = walk.operations_with_timestamps()
    assert len(wanted) >= 25, sorted(wanted)  # the walk finds the answers that carry times

    # A test clock at a Shanghai wall time; a merchant on it with a 3-day trial from 15:30.
    clock = await walk.call(
        "POST", "/v1/test-clocks", operator,
        json={"frozen_time": "2026-03-10T15:30:00+08:00", "name": "clock convention"},
    )  # fmt: skip
    tenant, sub = await signup_tenant(
        client, operator, plan="basic", trial_days=3, test_clock_id=clock["id"]
    )
    signed = await walk.call(
        "POST", "/v1/signup", operator,
        json={"merchant": {"name": "Z shop", "contact_email": "z@shop.cn"}, "plan": "custom",
              "contract_overrides": {"orders": {"unit_price": "0.25"}}},
        headers={"Idempotency-Key": f"clock-convention-{uuid.uuid4()}"},
    )  # fmt: skip
    custom_id = signed["merchant"]["id"]
    loose = await walk.call(
        "POST", "/v1/merchants", operator, json={"name": "Loose", "contact_email": "l@shop.cn"}
    )
    await walk.call(
        "POST", "/v1/test-clocks/{clock_id}/merchants", operator,
        json={"merchant_id": loose["id"]}, clock_id=clock["id"],
    )  # fmt: skip
    await walk.call("GET", "/v1/test-clocks/{clock_id}", operator, clock_id=clock["id"])
    await walk.call(
        "POST", "/v1/test-clocks/{clock_id}/advance", operator,
        json={"frozen_time": "2026-03-20T09:15:00+08:00"}, clock_id=clock["id"],
    )  # fmt: skip
    # An endpoint of the merchant's own hears every event from here on (their bodies are
    # answers too: the walk checks them below).
    hook = await walk.call(
        "POST", "/v1/webhook-endpoints", tenant,
        json={"url": "https://hooks.example.com/z", "events": ["*"]},
    )  # fmt: skip
    await walk.call("GET", "/v1/webhook-endpoints/{endpoint_id}", tenant, endpoint_id=hook["id"])
    await walk.call(
        "POST", "/v1/webhook-endpoints/{endpoint_id}/enable", operator, endpoint_id=hook["id"]
    )
    await walk.call("GET", "/v1/merchants/{merchant_id}", operator, merchant_id=tenant.merchant_id)
    await walk.call("GET", "/v1/merchants/me", tenant)
    await walk.call("PATCH", "/v1/merchants/me", tenant, json={"name": "Shop on Z time"})
    await walk.call("POST", "/v1/merchants/me/payment-setup", tenant, json={})
    key = await walk.call("POST", "/v1/api-keys", tenant, json={"name": "pipeline"})
    await walk.call("GET", "/v1/api-keys", tenant)
    await walk.call("DELETE", "/v1/api-keys/{key_id}", tenant, key_id=key["id"])
    await walk.call("GET", "/v1/plans", tenant)
    await walk.call("GET", "/v1/plans/{code}", tenant, code="basic")
    await walk.call("POST", "/v1/plans/quote", tenant, json={"orders": 3600})
    await walk.call(
        "PUT", "/v1/merchants/{merchant_id}/contract", operator,
        json={"overrides": {"gmv_fee": {"rate": "0.005"}},
              "effective_from": "2026-12-01T00:00:00+08:00"},
        merchant_id=custom_id,
    )  # fmt: skip

    # Usage, one event voided; the summary and the upcoming invoices.
    event = {"transaction_id": "z-1", "metric": "orders", "quantity": 1,
             "occurred_at": "2026-03-20T09:00:00+08:00"}  # fmt: skip
    await walk.call("POST", "/v1/usage/events", tenant, json=event)
    await walk.call(
        "POST", "/v1/usage/events/batch", tenant,
        json={"events": [{**event, "transaction_id": f"z-{n}"} for n in range(2, 5)]},
    )  # fmt: skip
    await walk.call("POST", "/v1/usage/events/{transaction_id}/void", tenant, transaction_id="z-2")
    await walk.call("GET", "/v1/usage/summary", tenant)
    await walk.call("GET", "/v1/invoices/upcoming", tenant)

    # Changes to the subscription, each answered in full.
    sid = sub["id"]
    base = "/v1/subscriptions/{subscription_id}"
    await walk.call("GET", "/v1/subscriptions", tenant)
    await walk.call("GET", base, tenant, subscription_id=sid)
    await walk.call(
        "POST", f"{base}/change-quote", tenant, json={"plan": "advanced"}, subscription_id=sid
    )
    await walk.call("POST", f"{base}/add-ons", tenant, json={"addons": ["complexity"]},
                    subscription_id=sid)  # fmt: skip
    await walk.call("POST", f"{base}/change-plan", tenant, json={"plan": "advanced"},
                    subscription_id=sid)  # fmt: skip
    await walk.call("POST", f"{base}/pause", tenant, subscription_id=sid)
    await walk.call("POST", f"{base}/resume", tenant, subscription_id=sid)
    await walk.call("POST", f"{base}/cancel", tenant, json={"at_period_end": True},
                    subscription_id=sid)  # fmt: skip
    await walk.call("POST", f"{base}/resume", tenant, subscription_id=sid)
    await walk.call(
        "POST", "/v1/sla-reports", operator,
        json={"merchant_id": str(tenant.merchant_id),
              "period_start": "2026-03-13T15:30:00+08:00", "csat": "0.95"},
    )  # fmt: skip

    # Invoices, credit notes, the balance; the audit log of it all.
    await close_pass(tenant.merchant_id)
    invoices = await walk.call("GET", "/v1/invoices", tenant)
    assert invoices
    for invoice in invoices:
        await walk.call("GET", "/v1/invoices/{invoice_ref}", tenant, invoice_ref=invoice["id"])
    first, *rest = invoices
    await walk.call(
        "POST", "/v1/invoices/{invoice_id}/credit-notes", operator,
        json={"amount_minor": 100, "reason": "goodwill"}, invoice_id=first["id"],
    )  # fmt: skip
    if rest:
        await walk.call(
            "POST", "/v1/invoices/{invoice_id}/void", operator, invoice_id=rest[0]["id"]
        )
    await walk.call("GET", "/v1/credit-notes", tenant)
    await walk.call("GET", "/v1/credit-balance", tenant)
    await walk.call(
        "GET", "/v1/audit-log", operator, params={"merchant_id": str(tenant.merchant_id)}
    )

    # The events the endpoint heard, each as sent; then the endpoint goes.
    events = await walk.call(
        "GET", "/v1/webhook-events", operator, params={"merchant_id": str(tenant.merchant_id)}
    )
    assert events, "the merchant's changes were events"
    for sent in events[:5]:
        await walk.call("GET", "/v1/webhook-events/{event_id}", operator, event_id=sent["id"])
    await walk.call("DELETE", "/v1/webhook-endpoints/{endpoint_id}", tenant, endpoint_id=hook["id"])

    # Finance: figures, and a stored reconciliation run read back.
    await walk.call("GET", "/v1/finance/mrr", operator, params={"on": "2026-03-31"})
    await walk.call("GET", "/v1/finance/summary", operator, params={"month": "2026-03"})
    run = reconcile.Reconciliation(date(2026, 3, 1), date(2026, 3, 31), "Asia/Shanghai", None)
    stored = await reconcile.store(run, now=datetime.now(UTC))
    await walk.call("GET", "/v1/finance/reconciliations/latest", operator)
    await walk.call(
        "GET", "/v1/finance/reconciliations/{reconciliation_id}", operator,
        reconciliation_id=uuid.UUID(stored["id"]),
    )  # fmt: skip
    await walk.call("GET", "/healthz", operator)

    assert wanted <= walk.checked, sorted(wanted - walk.checked)
    assert walk.timestamps >= 40


async def test_the_first_periods_fee_names_its_times_in_the_merchants_zone(
    client: AsyncClient, operator: Tenant
) -> None:
    from tests.integration.invoicing_helpers import invoices_of, new_clock

    clock = await new_clock(client, operator, "2026-11-30T12:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, plan="basic", test_clock_id=clock)
    await close_pass(tenant.merchant_id)
    [first] = await invoices_of(client, tenant)
    explanation = first["lines"][0]["explanation"]
    # Noon in Shanghai (04:00 UTC), and the zone said.
    assert "(30 Nov 12:00 – 1 Dec, Asia/Shanghai)" in explanation
    assert first["lines"][0]["period_start"] == "2026-11-30T04:00:00Z"
