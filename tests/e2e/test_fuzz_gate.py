"""The fuzz gate: schemathesis over every operation of the OpenAPI document, against a real
``billing serve`` on loopback, with a merchant key and with an operator key. No answer may be
a server error, and every answer must match the schema the document gives for its status.

It counts: every operation of the document is fuzzed (nothing excluded, so a route is fuzzed
the day it is added), each with at least ``CASES`` positive and ``NEGATIVE_CASES`` negative
cases per key (an operation with no input at all has one possible case). Test-clock advances
are capped during the fuzz (``BILLING_TEST_CLOCK_MAX_ADVANCE_DAYS``) so that a fuzzed advance
does not roll years of periods.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.conftest import ServerProcess, printed_key, start_server

CASES = 25
NEGATIVE_CASES = 10
CHECKS = [not_a_server_error, response_schema_conformance]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def fuzzed_server(fresh_database_url: str) -> Iterator[ServerProcess]:
    running = start_server(
        fresh_database_url,
        extra_env={"BILLING_LOG_LEVEL": "WARNING", "BILLING_TEST_CLOCK_MAX_ADVANCE_DAYS": "3"},
    )
    yield running
    running.stop()


def _keys(server: ServerProcess) -> tuple[dict[str, dict[str, str]], str]:
    operator = {"Authorization": f"Bearer {printed_key(server.output)}"}
    made = httpx.post(
        f"{server.base_url}/v1/signup",
        json={
            "merchant": {"name": "Fuzzed shop", "contact_email": "fuzz@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={**operator, "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    merchant = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
    link_token = made.json()["payment_setup"]["url"].rsplit("/", 1)[-1]
    return {"merchant": merchant, "operator": operator}, link_token


class _Run:
    """One operation, one key, one generation mode: ``examples`` cases, failures collected."""

    def __init__(
        self,
        operation: Any,
        key_name: str,
        auth: dict[str, str],
        mode: GenerationMode,
        base_url: str,
        session: requests.Session,
        cases: Counter[tuple[str, str, str]],
        failures: list[str],
    ) -> None:
        self.operation, self.key_name, self.auth, self.mode = operation, key_name, auth, mode
        self.base_url, self.session, self.cases, self.failures = base_url, session, cases, failures

    def fuzz(self, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=self.operation.as_strategy(generation_mode=self.mode))
        def one(case: Any) -> None:
            self.check(case)

        one()

    def check(self, case: Any) -> None:
        label = self.operation.label
        self.cases[(label, self.key_name, self.mode.value)] += 1
        try:
            response = case.call(
                base_url=self.base_url, session=self.session, headers=self.auth, timeout=30
            )
            case.validate_response(response, checks=CHECKS, headers=self.auth)
        except (Exception, BaseExceptionGroup) as failure:  # collected: one run reports all
            self.failures.append(
                f"{label} [{self.key_name}, {self.mode.value}]: "
                f"{type(failure).__name__}: {str(failure)[:1500]}\n"
                f"  {case.as_curl_command(headers=self.auth)[:600]}"
            )


def _has_no_input(operation: Any) -> bool:
    definition = operation.definition.raw
    return not definition.get("parameters") and "requestBody" not in definition


@pytest.mark.slow
def test_every_operation_survives_fuzzing_with_both_keys(fuzzed_server: ServerProcess) -> None:
    base_url = fuzzed_server.base_url
    document = httpx.get(f"{base_url}/schema/openapi.json", timeout=10).json()
    documented = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    keys, link_token = _keys(fuzzed_server)
    session = requests.Session()
    cases: Counter[tuple[str, str, str]] = Counter()
    failures: list[str] = []

    for operation in operations:
        for key_name, auth in keys.items():
            for mode, examples in (
                (GenerationMode.POSITIVE, CASES),
                (GenerationMode.NEGATIVE, NEGATIVE_CASES),
            ):
                run = _Run(operation, key_name, auth, mode, base_url, session, cases, failures)
                run.fuzz(examples)

    # The payment-setup link is opened without any key: its real token (the signup's) reaches
    # the link's own code too — here 409, the fuzzed server has no Stripe — not only made-up
    # tokens, and the answer matches the document.
    [link] = [op for op in operations if op.path == "/v1/pay/setup/{token}"]
    case = schema.make_case(operation=link, path_parameters={"token": link_token})
    opened = case.call(base_url=base_url, session=requests.Session(), timeout=30)
    case.validate_response(opened, checks=CHECKS)
    assert opened.status_code == 409, opened.text

    server_errors = [line for line in fuzzed_server.output if "unhandled_error" in line]
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures[:30])
    assert not server_errors, "".join(server_errors[:10])
    fuzzed = {operation.label for operation in operations}
    assert fuzzed == documented  # every operation of the document, nothing excluded
    for operation in operations:
        for key_name in keys:
            positive = cases[(operation.label, key_name, GenerationMode.POSITIVE.value)]
            negative = cases[(operation.label, key_name, GenerationMode.NEGATIVE.value)]
            if _has_no_input(operation):
                assert positive >= 1, operation.label
            else:
                assert positive >= CASES, (operation.label, key_name, positive)
                assert negative >= 1, (operation.label, key_name, negative)
