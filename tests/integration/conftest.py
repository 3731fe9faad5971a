"""API fixtures: the real app on the real database, driven in-process over ASGI."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar

from service.app import create_app
from service.db.engine import Database
from service.hot_path import HotPath
from service.settings import Settings
from service.tenancy import keys, merchants
from service.tenancy.principal import SYSTEM_ACTOR, Role
from tests import recorded_sql


@dataclass
class Tenant:
    merchant_id: uuid.UUID
    key: str
    key_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(autouse=True)
def _row_locks_name_the_merchant() -> Iterator[None]:
    """Fail a test that made the code lock rows of a distributed table without naming the
    merchant (Citus refuses such a statement; see ``tests.recorded_sql``)."""
    recorded_sql.SEEN.clear()
    yield
    shardless = recorded_sql.shardless_locks(recorded_sql.SEEN)
    recorded_sql.SEEN.clear()
    if shardless:
        pytest.fail(
            "row locks without the merchant (Citus refuses them: name merchant_id in the"
            " statement's WHERE):\n" + "\n".join(shardless),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def app(settings: Settings, database: Database) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this event loop (the database pool lives here); the session's pool is already
    started, so the app's own lifespan has nothing to add."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="module")
async def served_url(app: Litestar) -> AsyncIterator[str]:
    """The app served over real HTTP on loopback in this event loop (where the database pool
    lives), for a browser or curl."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, access_log=False))  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def hand_everything_over(monkeypatch: pytest.MonkeyPatch, hot_path: type[HotPath]) -> None:
    """Make a route's hot path hand every request to the Litestar handler beneath it (to
    compare the two layers' answers)."""

    async def hand_over(self: HotPath, *args: Any) -> None:
        await self.app(*args)

    monkeypatch.setattr(hot_path, "__call__", hand_over)


def post_scope(path: str, key: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope uvicorn would make for ``POST path`` with ``key`` as its bearer and
    ``headers`` after it: for tests that drive the app as a server would."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {key}".encode()),
            *headers,
        ],
        "state": {},
    }


async def issue_key(
    role: Role, merchant_id: uuid.UUID | None, scopes: list[str] | None = None
) -> tuple[str, uuid.UUID]:
    from service.db.engine import current

    async with current().engine.transaction():
        issued = await keys.issue(
            role=role, merchant_id=merchant_id, scopes=scopes, name="test", actor=SYSTEM_ACTOR
        )
    return issued.secret, issued.row.id


@pytest.fixture(scope="session")
async def operator(database: Database) -> Tenant:
    secret, key_id = await issue_key(Role.OPERATOR, None)
    return Tenant(merchant_id=uuid.UUID(int=0), key=secret, key_id=key_id)


@pytest.fixture
def operator_headers(operator: Tenant) -> dict[str, str]:
    return operator.headers


async def make_tenant(name: str = "Shop", **fields: Any) -> Tenant:
    from service.db.engine import current

    async with current().engine.transaction():
        merchant = await merchants.create(
            name=name,
            contact_email=fields.get("contact_email", "ops@shop.cn"),
            timezone=fields.get("timezone", "Asia/Shanghai"),
            currency=fields.get("currency", "CNY"),
            actor=SYSTEM_ACTOR,
        )
    secret, key_id = await issue_key(Role.MERCHANT, merchant.id, fields.get("scopes"))
    return Tenant(merchant_id=merchant.id, key=secret, key_id=key_id)


@pytest.fixture
async def tenant(database: Database) -> Tenant:
    return await make_tenant("Shop A")


@pytest.fixture
async def other_tenant(database: Database) -> Tenant:
    return await make_tenant("Shop B")


async def signup_tenant(
    client: httpx.AsyncClient,
    operator: Tenant,
    *,
    plan: str = "basic",
    trial_days: int = 0,
    test_clock_id: str | None = None,
    name: str = "Signed-up shop",
    **extra: Any,
) -> tuple[Tenant, dict[str, Any]]:
    """A merchant made through POST /v1/signup: its key and its subscription."""
    tenant, created = await signup_answer(
        client,
        operator,
        plan=plan,
        trial_days=trial_days,
        test_clock_id=test_clock_id,
        name=name,
        **extra,
    )
    return tenant, created["subscription"]


async def signup_answer(
    client: httpx.AsyncClient,
    operator: Tenant,
    *,
    plan: str = "basic",
    trial_days: int = 0,
    test_clock_id: str | None = None,
    name: str = "Signed-up shop",
    **extra: Any,
) -> tuple[Tenant, dict[str, Any]]:
    """A merchant made through POST /v1/signup: its key and the whole answer (the payment-setup
    link, shown once, among it)."""
    body: dict[str, Any] = {
        "merchant": {"name": name, "contact_email": "owner@shop.cn"},
        "plan": plan,
        "trial_days": trial_days,
        **extra,
    }
    if test_clock_id:
        body["test_clock_id"] = test_clock_id
    response = await client.post(
        "/v1/signup",
        json=body,
        headers={**operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    tenant = Tenant(
        merchant_id=uuid.UUID(created["merchant"]["id"]),
        key=created["api_key"]["key"],
        key_id=uuid.UUID(created["api_key"]["id"]),
    )
    return tenant, created
