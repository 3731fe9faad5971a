"""Request log lines carry request_id (and merchant_id once authenticated); keys never do."""

import io
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
from httpx import AsyncClient

from service.app import create_app
from service.observability import logging as billing_logging
from service.settings import Settings
from tests.integration.conftest import Tenant


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    billing_logging.configure(log_format="json", force=True, stream=stream)
    yield stream
    billing_logging.configure(log_format="console", force=True)


async def test_request_lines_carry_request_and_merchant_ids(
    client: AsyncClient, tenant: Tenant, json_logs: io.StringIO
) -> None:
    await client.get("/v1/merchants/me", headers={**tenant.headers, "X-Request-ID": "req-77"})
    await client.get("/v1/merchants/me", headers={"Authorization": "Bearer kbm_wrong"})
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) == 2
    ok, refused = requests
    assert ok["request_id"] == "req-77"
    assert ok["merchant_id"] == str(tenant.merchant_id)
    assert ok["status"] == 200
    assert refused["status"] == 401
    assert "merchant_id" not in refused
    assert tenant.key not in json_logs.getvalue()
    assert "kbm_wrong" not in json_logs.getvalue()


def test_secret_looking_fields_are_masked(json_logs: io.StringIO) -> None:
    import structlog

    structlog.get_logger("t").info(
        "probe", api_key="kbm_secret", webhook_secret="whsec_x", key_id="k-1"
    )
    line = json.loads(json_logs.getvalue().splitlines()[-1])
    assert line["api_key"] == "***"
    assert line["webhook_secret"] == "***"
    assert line["key_id"] == "k-1"


def test_values_json_cannot_hold_are_written_as_their_repr(json_logs: io.StringIO) -> None:
    import structlog

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque 7>"

    structlog.get_logger("t").info("probe", thing=Opaque(), amount=Decimal("12.30"), tags={"a"})
    line = json.loads(json_logs.getvalue().splitlines()[-1])
    assert line["thing"] == "<opaque 7>"
    assert line["amount"] == "12.30"
    assert line["tags"] == ["a"]


def test_a_library_exception_keeps_its_traceback_in_json(json_logs: io.StringIO) -> None:
    import logging

    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        logging.getLogger("asyncpg.pool").exception("connection lost")
    line = json.loads(json_logs.getvalue().splitlines()[-1])
    assert line["event"] == "connection lost"
    assert "Traceback" in line["exception"]
    assert "peer went away" in line["exception"]


def test_making_the_app_leaves_library_logs_in_our_format(
    json_logs: io.StringIO, settings: Settings
) -> None:
    import logging

    create_app(settings)  # Litestar would configure the root logger its own way
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    line = json.loads(json_logs.getvalue().splitlines()[-1])
    assert (line["event"], line["level"]) == ("Application startup complete.", "info")
