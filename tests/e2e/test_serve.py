"""``billing serve`` on a database ``billing migrate`` made: prints an operator key once (not in
production), serves the API, refuses a schema that is not its own, runs N processes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import BILLING, ServerProcess, printed_key, start_server


def test_first_start_prints_an_operator_key_and_serves(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/readyz").json()["database"] == "ok"
    key = printed_key(server.output)
    assert f"{server.base_url}/schema" in "".join(server.output)
    created = httpx.post(
        f"{server.base_url}/v1/merchants",
        json={"name": "淘卡小店", "contact_email": "a@b.cn"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201
    assert created.json()["name"] == "淘卡小店"


def test_second_start_reuses_the_database_and_prints_no_new_key(
    fresh_database_url: str,
) -> None:
    first = start_server(fresh_database_url)
    key = printed_key(first.output)
    assert first.stop() == 0
    second = start_server(fresh_database_url)
    try:
        assert "kbo_" not in "".join(second.output)
        me = httpx.get(f"{second.base_url}/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200
    finally:
        assert second.stop() == 0


def test_logs_never_show_the_key(server: ServerProcess) -> None:
    key = printed_key(server.output)
    httpx.get(f"{server.base_url}/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
    server.stop()
    logged = [line for line in server.output if line.startswith("{")]
    assert any(json.loads(line).get("path") == "/v1/api-keys" for line in logged)
    assert all(key not in line for line in logged)


def test_in_production_serve_prints_no_key_and_says_how_to_make_one(
    fresh_database_url: str,
) -> None:
    """A container's output is its log: each replica would print a key of its own there."""
    running = start_server(
        fresh_database_url, extra_env={"BILLING_ENV": "production", "BILLING_LOG_LEVEL": "ERROR"}
    )
    try:
        said = " ".join("".join(running.output).split())
        assert "kbo_" not in said
        assert "billing keys create --role operator --all-scopes" in said
    finally:
        assert running.stop() == 0


def _refused(database_url: str, *command: str) -> str:
    done = subprocess.run(
        [BILLING, *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, "BILLING_LOG_LEVEL": "ERROR"},
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("command", [("serve",), ("worker", "--once")], ids=" ".join)
async def test_a_schema_behind_or_ahead_of_the_code_is_refused_in_one_line(
    fresh_database_url: str, command: tuple[str, ...]
) -> None:
    connection = await asyncpg.connect(fresh_database_url)
    try:
        newest = await connection.fetchval("SELECT max(name) FROM migration")
        await connection.execute("DELETE FROM migration WHERE name = $1", newest)
        behind = _refused(fresh_database_url, *command)
        assert behind.startswith("error: the database schema is behind this billing")
        assert newest in behind
        assert "run `billing migrate` first" in behind

        await connection.execute(
            "INSERT INTO migration (name, app_name, ran_on) VALUES ($1, 'billing', now()),"
            " ('2099-01-01T00:00:00:000000', 'billing', now())",
            newest,
        )
        ahead = _refused(fresh_database_url, *command)
        assert ahead.startswith("error: the database schema is newer than this billing")
        assert "2099-01-01T00:00:00:000000" in ahead
    finally:
        await connection.close()


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def test_serve_with_two_workers_answers_from_two_processes(fresh_database_url: str) -> None:
    running = start_server(fresh_database_url, "--workers", "2")
    try:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while time.monotonic() < deadline:
            workers = [
                child
                for child in _children(running.process.pid)
                if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text()
            ]
            if len(workers) == 2:
                break
            time.sleep(0.1)
        assert len(workers) == 2, "uvicorn's two worker processes"
        # Each process answers from a pool of its own: take one worker away, the other serves.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(20):
            assert httpx.get(f"{running.base_url}/readyz", timeout=10).status_code == 200
    finally:
        assert running.stop() == 0
