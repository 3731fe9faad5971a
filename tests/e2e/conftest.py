"""Real processes: the ``billing`` command on the test run's PostgreSQL, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import pytest

from service.db import engine as db_engine
from tests import citus_cluster
from webhooks.standin import StandIn

BILLING = str(Path(sys.executable).parent / "billing")
MACHINE_LINE = (
    r"machine\s+\d+ CPUs; load average \(1 min, 5 min\) [\d.]+, [\d.]+ before;"
    r" [\d.]+, [\d.]+ after"
)
"""The machine-load line every benchmark prints (``service.bench.machine``)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A `billing serve` whose output goes to a file: a pipe nobody reads would fill up and
    block the server (see `WorkerProcess`)."""

    process: subprocess.Popen[str]
    base_url: str
    log: IO[str]

    @property
    def output(self) -> list[str]:
        """Every line it has printed so far."""
        self.log.seek(0)
        return self.log.readlines()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    database_url: str, *args: str, extra_env: dict[str, str] | None = None
) -> ServerProcess:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BILLING_ENV": "test",
        "BILLING_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the test's server
    process = subprocess.Popen(
        [BILLING, "serve", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    server = ServerProcess(process=process, base_url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("server exited early:\n" + "".join(server.output))
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not become ready:\n" + "".join(server.output))


def migrate(database_url: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`billing migrate` (creates the database if missing): what every deployment runs before
    `serve` and `worker`, which change no schema."""
    done = subprocess.run(
        [BILLING, "migrate"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, "BILLING_ENV": "test", **extra_env},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def unmigrated_database_url(database_dsn: str) -> str:
    """A database name nobody has used yet, on the test run's server (nothing creates it)."""
    return db_engine._with_database(database_dsn, f"e2e_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_database_url(unmigrated_database_url: str) -> str:
    """A new database, made and migrated by `billing migrate`, with nothing in it yet. On a
    Citus coordinator (``make test-citus``) it is made a Citus database on every node first, as
    an operator would, so that `billing migrate` distributes its tables."""
    if asyncio.run(citus_cluster.topology(unmigrated_database_url)) is not None:
        asyncio.run(citus_cluster.prepare_database(unmigrated_database_url))
    migrate(unmigrated_database_url)
    return unmigrated_database_url


@pytest.fixture
def server(fresh_database_url: str) -> Iterator[ServerProcess]:
    running = start_server(fresh_database_url)
    yield running
    running.stop()


def printed_key(output: list[str]) -> str:
    match = re.search(r"\b(kbo_[A-Za-z0-9_\-]{20,})", "".join(output))
    assert match, "the first start prints an operator key"
    return match.group(1)


# In-process API fixtures, for setting up data the real processes then work on.
from tests.integration.conftest import app, client, operator  # noqa: E402, F401


@dataclass
class WorkerProcess:
    """A `billing worker` whose output goes to a file, not a pipe: a pipe nobody reads fills up
    and blocks the worker mid-transaction (two workers read one after the other once did)."""

    process: subprocess.Popen[str]
    log: IO[str]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def finish(self, timeout: float = 120) -> str:
        """Its output once it exits; a worker that hangs prints its task stacks, is killed."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"worker did not finish in {timeout} s:\n{self.output()[-5000:]}"
            ) from None
        return self.output()

    def poll(self) -> int | None:
        return self.process.poll()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


def start_worker(
    database_url: str, *args: str, extra_env: dict[str, str] | None = None
) -> WorkerProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BILLING_ENV": "test",
        "BILLING_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [BILLING, "worker", *args], stdout=log, stderr=subprocess.STDOUT, text=True, env=env
    )
    return WorkerProcess(process=process, log=log)


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 60,
    detail: Callable[[], str] = lambda: "",
) -> Any:
    """What ``check`` finds once it finds something (polled every 0.2 s); an AssertionError
    naming ``what`` after ``timeout`` seconds, with the end of ``detail()`` (a process's
    output, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{detail()[-4000:]}".rstrip())


def save_card(
    http: httpx.Client,
    setup_url: str,
    standin: StandIn,
    *,
    card: str = "tok_visa",
    timeout: float = 60,
) -> str:
    """The merchant opens its payment-setup link in a browser (no key) and saves ``card`` on
    the Stripe Checkout page it is sent to. The link answers 503 (with ``Retry-After``) until
    the worker has made the merchant's Stripe customer. The Checkout Session's id."""
    path = urlsplit(setup_url).path
    deadline = time.monotonic() + timeout
    while True:
        opened = http.get(path, follow_redirects=False)
        if opened.status_code == 303:
            break
        assert opened.status_code == 503, opened.text
        assert opened.headers["retry-after"]
        assert time.monotonic() < deadline, "the merchant's Stripe customer was never made"
        time.sleep(0.2)
    session_id = opened.headers["location"].rsplit("/", 1)[-1]
    standin.hosted.complete_checkout(session_id, card=card)
    return session_id


def stripe_env(standin: StandIn, secret: str) -> dict[str, str]:
    """What `billing serve` and `billing worker` need to talk to the stand-in."""
    return {
        "STRIPE_API_KEY": "sk_test_standin",
        "STRIPE_API_BASE": standin.base_url,
        "STRIPE_WEBHOOK_SECRET": secret,
    }
