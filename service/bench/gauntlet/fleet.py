"""The processes the gauntlet runs, kills and starts again: ``billing serve`` and ``billing
worker``, each in a slot that keeps its port, its environment and its log across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BILLING = str(Path(sys.executable).parent / "billing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Slot:
    """One API server or worker: started, SIGKILLed and started again, always the same way."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    is_down_on_purpose: bool = False
    """Killed by the fault schedule and not started again yet."""

    @property
    def is_api(self) -> bool:
        return self.port is not None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            # Our own command with arguments we built: nothing untrusted reaches it.
            self.process = subprocess.Popen(  # noqa: S603
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        self.is_down_on_purpose = False

    def kill(self) -> bool:
        """SIGKILL, as a crash or an OOM kill would; False if it was not running."""
        if not self.is_running:
            return False
        assert self.process is not None
        self.is_down_on_purpose = True
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        return True

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (the graceful way) and wait; SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    async def wait_up(self, within: float = 120) -> bool:
        """An API answers ``/healthz`` (a worker: its process is running)."""
        deadline = time.monotonic() + within
        if not self.is_api:
            return self.is_running
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            while time.monotonic() < deadline:
                if not self.is_running:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.base_url}/healthz")).status_code == 200:
                        return True
                await asyncio.sleep(0.1)
        return False


@dataclass
class Fleet:
    """The API servers and workers of one gauntlet run."""

    apis: list[Slot] = field(default_factory=list)
    workers: list[Slot] = field(default_factory=list)

    @classmethod
    def make(
        cls, *, apis: int, workers: int, env: dict[str, str], log_dir: Path, worker_interval: float
    ) -> Fleet:
        fleet = cls()
        for n in range(1, apis + 1):
            port = free_port()
            fleet.apis.append(
                Slot(
                    name=f"api-{n}",
                    argv=[BILLING, "serve", "--port", str(port)],
                    env=env,
                    log_path=log_dir / f"api-{n}.log",
                    port=port,
                )
            )
        for n in range(1, workers + 1):
            fleet.workers.append(
                Slot(
                    name=f"worker-{n}",
                    argv=[BILLING, "worker", "--interval", str(worker_interval)],
                    env=env,
                    log_path=log_dir / f"worker-{n}.log",
                )
            )
        return fleet

    @property
    def slots(self) -> list[Slot]:
        return [*self.apis, *self.workers]

    def running_apis(self) -> list[Slot]:
        return [slot for slot in self.apis if slot.is_running]

    def stop_all(self) -> None:
        for slot in self.slots:
            slot.is_down_on_purpose = True
            slot.stop()


def run_command(argv: list[str], env: dict[str, str], log_path: Path) -> str:
    """Run a ``billing`` command to its end (migrate, keys); its output, or an error with it."""
    done = subprocess.run(  # noqa: S603 - our own command
        [BILLING, *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    with log_path.open("a") as log:
        log.write(f"$ billing {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"billing {argv[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def process_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment with the gauntlet's settings on top."""
    return {**os.environ, **extra}
