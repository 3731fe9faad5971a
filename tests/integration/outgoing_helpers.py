"""Outgoing webhooks under test: the README's receiver example (extracted and run as written), a
receiver on loopback that checks every delivery with it, endpoints registered through the API,
and the worker's delivery pass.

Endpoints registered here are deleted when their test ends (the session database is shared:
an endpoint left behind would hear every later test's events)."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import httpx
import pytest

from service.app import create_app
from service.db.engine import Database
from service.outgoing import delivery
from service.outgoing.transport import Sender
from service.settings import OutgoingWebhookSettings, Settings
from tests.integration.conftest import Tenant

README = Path(__file__).resolve().parents[2] / "README.md"

ALLOWING = OutgoingWebhookSettings(allows_private_addresses=True)
"""Deliveries may reach the receivers on 127.0.0.1 (the development and test allowance)."""


def receiver_example_source() -> str:
    """The receiver example of the README, exactly as written there."""
    text = README.read_text(encoding="utf-8")
    found = re.search(r"```python\n(# receiver\.py.*?)```", text, flags=re.DOTALL)
    assert found, "the README's receiver example (```python # receiver.py ...) is missing"
    return found.group(1)


def receiver_example(secret: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The README's example loaded as a module (its server is not started), for ``secret``."""
    monkeypatch.setenv("KEFU_WEBHOOK_SECRET", secret)
    module = ModuleType("kefu_receiver_example")
    exec(compile(receiver_example_source(), "README.md:receiver.py", "exec"), module.__dict__)
    return module


@dataclass
class Arrival:
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any] | None
    """The event when the signature checked out (the README's ``verify``), else None."""
    refusal: str | None

    @property
    def delivery_id(self) -> str:
        return self.headers["Kefu-Delivery-Id"]


@dataclass
class Receiver:
    """Records every POST; checks its signature with the README's code; answers ``status``.
    ``stop()`` then ``start()`` takes it down for a while on the same port."""

    verify: Callable[[bytes, str, str], dict[str, Any]]
    secret: str = ""
    status: int = 200
    answer: bytes = b""
    answer_headers: dict[str, str] = field(default_factory=dict)
    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/kefu/webhooks"

    def start(self) -> None:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = state.verify(body, self.headers["Kefu-Signature"], state.secret)
                    refusal = None
                except ValueError as error:
                    event, refusal = None, str(error)
                with state.lock:
                    state.arrivals.append(Arrival(dict(self.headers), body, event, refusal))
                self.send_response(state.status if refusal is None else 400)
                for name, value in state.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(state.answer)))
                self.end_headers()
                self.wfile.write(state.answer)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, merchant_id: UUID | None = None) -> list[dict[str, Any]]:
        """Verified events received, in arrival order (one merchant's with ``merchant_id``)."""
        with self.lock:
            found = [a.event for a in self.arrivals if a.event is not None]
        if merchant_id is not None:
            found = [event for event in found if event["merchant_id"] == str(merchant_id)]
        return found

    def types(self, merchant_id: UUID | None = None) -> list[str]:
        return [event["type"] for event in self.events(merchant_id)]


@contextmanager
def receiving(verify: Callable[..., dict[str, Any]]) -> Iterator[Receiver]:
    receiver = Receiver(verify=verify)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="session")
def webhook_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, outgoing=ALLOWING)


@pytest.fixture(scope="session")
async def webhook_client(
    webhook_settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The app allowing loopback endpoints, in this event loop."""
    transport = httpx.ASGITransport(app=create_app(webhook_settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass
class Endpoint:
    id: UUID
    secret: str
    body: dict[str, Any]


@asynccontextmanager
async def registered(
    client: httpx.AsyncClient,
    key: Tenant,
    url: str,
    *,
    events: list[str] | None = None,
    merchant_id: UUID | None = None,
) -> AsyncIterator[Endpoint]:
    """An endpoint registered through the API for the block, deleted after it."""
    body: dict[str, Any] = {"url": url, "events": events or ["*"]}
    if merchant_id is not None:
        body["merchant_id"] = str(merchant_id)
    made = await client.post("/v1/webhook-endpoints", json=body, headers=key.headers)
    assert made.status_code == 201, made.text
    answer = made.json()
    endpoint = Endpoint(id=UUID(answer["id"]), secret=answer["secret"], body=answer)
    try:
        yield endpoint
    finally:
        gone = await client.delete(f"/v1/webhook-endpoints/{endpoint.id}", headers=key.headers)
        assert gone.status_code in (200, 404), gone.text


@dataclass
class Deliverer:
    """The worker's delivery pass, for the endpoints of one test, at the time now or ``at``."""

    endpoint_ids: list[UUID]
    settings: OutgoingWebhookSettings = ALLOWING
    sender: Sender | None = None

    async def run(self, *, at: datetime | None = None) -> delivery.DeliverySummary:
        if self.sender is None:
            self.sender = Sender(
                timeout_seconds=self.settings.timeout_seconds,
                requires_https=False,
                allows_private=True,
            )
        return await delivery.deliver_pass(
            self.sender,
            self.settings,
            now=at or datetime.now(UTC),
            endpoint_ids=self.endpoint_ids,
        )

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.aclose()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def as_utc(value: Any) -> Any:
    """JSON with every ISO timestamp in UTC, to compare answers written in other offsets."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)", value):
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {key: as_utc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_utc(item) for item in value]
    return value


def decoded(body: bytes) -> dict[str, Any]:
    return json.loads(body)  # type: ignore[no-any-return]
