"""No log line, in either format and tracebacks included, holds an API key, a session cookie, a
Stripe key or a webhook secret; a traceback is rendered without locals and off the event loop.

The failures are real requests to the real app: a route that fails with secrets in its local
variables and in its exception's message, and the finance login."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
from litestar import Litestar, Request, post

from service.app import create_app
from service.observability import logging as billing_logging
from service.settings import Settings, StripeSettings
from tests.integration.conftest import Tenant, signup_answer

STRIPE_KEY = "sk_test_51NotARealKeyButShapedLikeOne0123456789"
WEBHOOK_SECRET = "whsec_NotARealSecretButShapedLikeOne0123"
ODD_SECRET = "plain-looking-stripe-key-value-42"  # no known shape: blanked by its value


class RecordingStream(io.StringIO):
    """The log's stream; it remembers which thread wrote each traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.traceback_threads: list[str] = []

    def write(self, text: str) -> int:
        if "Traceback" in text:
            self.traceback_threads.append(threading.current_thread().name)
        return super().write(text)


@post("/v1/test-only/fail", status_code=200)
async def fail_with_secrets_in_hand(request: Request[Any, Any, Any]) -> None:
    """A handler that fails while holding secrets, as a real one could."""
    authorization = request.headers["authorization"]
    cookie = request.headers.get("cookie", "")
    fresh_key = "kbm_" + "S3cr3tFreshlyMintedKeyValue0123456789abcdefg"
    settings: Settings = request.app.state.settings
    stripe_secret = settings.stripe.api_key
    assert authorization
    assert cookie
    assert fresh_key
    assert stripe_secret
    raise RuntimeError(f"could not use {authorization} with {stripe_secret} ({cookie})")


@pytest.fixture(params=["console", "json"])
def log_stream(request: pytest.FixtureRequest) -> Iterator[tuple[str, RecordingStream]]:
    stream = RecordingStream()
    billing_logging.configure(
        log_format=request.param,
        force=True,
        stream=stream,
        secrets=(STRIPE_KEY, WEBHOOK_SECRET, ODD_SECRET),
    )
    yield request.param, stream
    billing_logging.configure(log_format="console", force=True)


@pytest.fixture
async def failing_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: Litestar = create_app(
        Settings(
            environment="test",
            database=settings.database,
            stripe=StripeSettings(api_key=ODD_SECRET, webhook_secret=WEBHOOK_SECRET),
        )
    )
    app.register(fail_with_secrets_in_hand)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_an_unhandled_error_logs_no_secret_in_either_format(
    failing_client: httpx.AsyncClient,
    operator: Tenant,
    log_stream: tuple[str, RecordingStream],
) -> None:
    log_format, stream = log_stream
    response = await failing_client.post(
        "/v1/test-only/fail",
        headers={
            **operator.headers,
            "cookie": "kefu_finance_session=SessionTokenValue0123456789",
            "X-Request-Id": "fail-1",
        },
    )
    assert response.status_code == 500
    billing_logging.flush()
    structlog.get_logger("probe").info(
        "values_in_free_text",
        note=f"keys {operator.key} {STRIPE_KEY} {WEBHOOK_SECRET} Bearer {operator.key}",
    )
    output = stream.getvalue()

    assert "unhandled_error" in output
    assert "RuntimeError" in output  # the traceback is there ...
    assert "fail-1" in output
    for secret in (
        operator.key,
        operator.key[4:],
        "S3cr3tFreshlyMintedKeyValue",
        "SessionTokenValue0123456789",
        ODD_SECRET,
        STRIPE_KEY,
        WEBHOOK_SECRET,
    ):
        assert secret not in output, (log_format, secret)
    # ... without the frames' local variables.
    assert "fresh_key" not in output
    assert "authorization =" not in output


async def test_a_traceback_is_rendered_off_the_event_loop(
    failing_client: httpx.AsyncClient,
    operator: Tenant,
    log_stream: tuple[str, RecordingStream],
) -> None:
    _, stream = log_stream
    for _ in range(3):
        response = await failing_client.post("/v1/test-only/fail", headers=operator.headers)
        assert response.status_code == 500
    billing_logging.flush()
    loop_thread = threading.current_thread().name
    assert len(stream.traceback_threads) == 3
    assert loop_thread not in stream.traceback_threads
    assert all(name.startswith("billing-log") for name in stream.traceback_threads)


async def test_the_login_form_never_logs_the_key_it_was_given(
    client: httpx.AsyncClient, operator: Tenant, log_stream: tuple[str, RecordingStream]
) -> None:
    _, stream = log_stream
    client.cookies.clear()
    response = await client.post(
        "/finance/login",
        data={"api_key": operator.key},
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 303
    token = response.cookies["kefu_finance_session"]
    client.cookies.clear()
    await client.get("/finance/", headers={"cookie": f"kefu_finance_session={token}"})
    billing_logging.flush()
    output = stream.getvalue()
    assert "request" in output
    assert operator.key not in output
    assert token not in output


async def test_a_payment_setup_links_token_never_reaches_the_log(
    client: httpx.AsyncClient, operator: Tenant, log_stream: tuple[str, RecordingStream]
) -> None:
    """The link is opened without a key: its token, in the request's path, is the credential."""
    _, stream = log_stream
    _, created = await signup_answer(client, operator, name="Logged link shop")
    url = created["payment_setup"]["url"]
    token = url.rsplit("/", 1)[-1]
    opened = await client.get(urlsplit(url).path)  # no Stripe here: a 409, logged
    assert opened.status_code == 409
    billing_logging.flush()
    output = stream.getvalue()
    assert "/v1/pay/setup/ps_***" in output
    assert token not in output
    secret = token.split("_", 2)[2]  # ps_<merchant hex>_<43 characters, "_" among them>
    assert len(secret) == 43
    assert secret not in output
