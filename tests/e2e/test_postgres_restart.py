"""PostgreSQL going away under a running ``billing serve`` and ``billing worker``, and coming back.

The test starts a PostgreSQL of its own (the embedded server, in a temporary folder) so that it
may SIGKILL it: every process of it at once, as a crash would. While it is down, ``/readyz``
answers 503 and requests answer a 503 problem with ``Retry-After`` (never a 500, never a hang:
the client's generous timeout is only a guard); the worker backs off. When it is back, both
processes carry on by themselves: nothing is restarted."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.bench.gauntlet.postgres import OwnPostgres
from tests.e2e.conftest import (
    BILLING,
    ServerProcess,
    WorkerProcess,
    migrate,
    start_server,
    start_worker,
    wait_for,
)

GENEROUS = 60.0
"""A guard against a hang, never a measurement."""


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres.start(tmp_path / "postgres")
    yield server
    server.stop()


def _logged(worker: WorkerProcess, event: str) -> list[dict[str, Any]]:
    lines = [line for line in worker.output().splitlines() if line.startswith("{")]
    return [entry for entry in map(json.loads, lines) if entry.get("event") == event]


def _operator_key(database_url: str) -> str:
    made = subprocess.run(
        [BILLING, "keys", "create", "--role", "operator", "--all-scopes"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def test_while_postgres_is_down_requests_get_503s_and_everything_recovers_without_a_restart(
    own_postgres: OwnPostgres,
) -> None:
    database_url = own_postgres.dsn("billing")
    migrate(database_url)
    operator = {"Authorization": f"Bearer {_operator_key(database_url)}"}
    quick = {"BILLING_WORKER_BACKOFF_MAX_SECONDS": "1", "BILLING_LOG_LEVEL": "INFO"}
    server: ServerProcess = start_server(database_url, extra_env=quick)
    worker = start_worker(database_url, "--interval", "0.2", extra_env=quick)
    try:
        with httpx.Client(base_url=server.base_url, timeout=GENEROUS) as http:
            clock = http.post(
                "/v1/test-clocks",
                json={"frozen_time": "2026-03-10T00:00:00+08:00", "name": "restart"},
                headers=operator,
            ).json()["id"]
            made = http.post(
                "/v1/signup",
                json={
                    "merchant": {"name": "Restart shop", "contact_email": "r@shop.cn"},
                    "plan": "basic",
                    "trial_days": 0,
                    "test_clock_id": clock,
                },
                headers={**operator, "Idempotency-Key": "restart-signup"},
            )
            assert made.status_code == 201, made.text
            merchant = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}

            def order(n: int) -> dict[str, Any]:
                return {
                    "transaction_id": f"restart-{n}",
                    "metric": "orders",
                    "occurred_at": "2026-03-10T00:00:00+08:00",
                    "quantity": 1,
                }

            assert http.post("/v1/usage/events", json=order(1), headers=merchant).status_code == 201
            wait_for("the worker's first passes", lambda: '"worker_started"' in worker.output())

            own_postgres.kill()

            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["retry-after"] == "1"
            for method, path, body in (
                ("POST", "/v1/usage/events", order(2)),  # the plain-ASGI hot path
                ("POST", "/v1/usage/events/batch", {"events": [order(3)]}),
                ("GET", "/v1/invoices", None),  # the ORM
                ("GET", "/v1/merchants/me", None),
            ):
                answer = http.request(method, path, json=body, headers=merchant)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert int(answer.headers["retry-after"]) >= 1
                problem = answer.json()
                assert problem["type"] == "https://kefu-billing.dev/problems/database-unavailable"
                assert problem["request_id"]
            # The key cache expired meanwhile, or not: an unknown key is never a 500 either.
            stranger = http.get("/v1/invoices", headers={"Authorization": "Bearer kbm_nobody"})
            assert stranger.status_code == 503

            backing_off = wait_for(
                "the worker to back off three times",
                lambda: len(found := _logged(worker, "worker_backing_off")) >= 3 and found,
            )
            waits = [entry["retry_in_seconds"] for entry in backing_off[:3]]
            assert waits == sorted(waits), waits
            assert waits[-1] > waits[0], waits
            assert len(_logged(worker, "worker_database_unavailable")) == 1

            own_postgres.restart()

            wait_for("/readyz to answer 200", lambda: http.get("/readyz").status_code == 200)
            assert http.post("/v1/usage/events", json=order(2), headers=merchant).status_code == 201
            again = http.post("/v1/usage/events", json=order(1), headers=merchant)
            assert again.json()["status"] == "duplicate"  # stored before the crash, kept
            wait_for(
                "the worker to say the database is back",
                lambda: _logged(worker, "worker_database_back"),
                detail=worker.output,
            )

            # The worker works again: March ends (and its grace window); it invoices it.
            advanced = http.post(
                f"/v1/test-clocks/{clock}/advance",
                json={"frozen_time": "2026-04-03T01:00:00+08:00"},
                headers=operator,
            )
            assert advanced.status_code == 200, advanced.text

            def march_invoiced() -> bool:  # March is the only period that has ended
                invoices = http.get("/v1/invoices", headers=merchant).json()
                return any(invoice["kind"] == "period" for invoice in invoices)

            wait_for("the worker to invoice March", march_invoiced)
        # Neither process was restarted: the same ones served before, during and after.
        assert server.process.poll() is None
        assert worker.poll() is None
    finally:
        server.stop()
        if worker.poll() is None:
            worker.process.terminate()
            worker.finish(timeout=30)
