"""``billing bench overload``: far more clients than one API process can serve.

A fresh embedded PostgreSQL, one ``billing serve`` and a load generator in another process
with N keep-alive clients (512 by default), each sending single usage events as fast as it is
answered and doing what the README tells clients: on a 503, wait ``Retry-After`` and send the
same event again. Twice: with the in-flight cap (``BILLING_MAX_IN_FLIGHT``, default 128), then
without one (the cap set out of reach), so the figures show what the cap buys: latency of the
answered requests, fast refusals instead of a queue, client timeouts (at 30 s), peak requests
in flight, server memory. The merchant's rate limit is out of reach: this is about the process.
Prints figures; asserts only that every event a client was told was stored is counted.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from service.bench import loadgen
from service.bench.client import Connection, percentile
from service.bench.machine import MachineLoad
from service.bench.server import UNREACHED, Server, counted, fresh_database, signup
from service.bench.usage import bench_app

CLIENT_TIMEOUT_SECONDS = 30.0
UNCAPPED = 1_000_000


@dataclass(frozen=True)
class OverloadPlan:
    host: str
    port: int
    key: str
    period_start: str
    clients: int
    seconds: float
    phase: str


@bench_app.command("overload")
def overload(
    clients: Annotated[int, typer.Option(help="Concurrent clients (keep-alive).")] = 512,
    seconds: Annotated[float, typer.Option(help="How long each phase sends.")] = 20.0,
    max_in_flight: Annotated[
        int, typer.Option(help="BILLING_MAX_IN_FLIGHT of the capped phase.")
    ] = 128,
    uncapped: Annotated[
        bool, typer.Option(help="Also run a phase without the cap, to compare.")
    ] = True,
) -> None:
    """Many more clients than one process can serve: latency, refusals, timeouts, memory."""
    phases = [("capped", max_in_flight)] + ([("uncapped", UNCAPPED)] if uncapped else [])
    say = _say
    machine = MachineLoad()
    results = []
    for phase, cap in phases:
        say(f"{phase}: {clients} clients for {seconds:g} s, BILLING_MAX_IN_FLIGHT={cap} ...")
        results.append(_phase(phase, cap, clients, seconds))
    print(report(clients, seconds, results, machine.finished()))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _phase(phase: str, cap: int, clients: int, seconds: float) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-overload-"))
    try:
        with fresh_database(work_dir) as dsn:
            serve = Server.start(
                dsn,
                work_dir / "server.log",
                extra_env={
                    "BILLING_MAX_IN_FLIGHT": str(cap),
                    "BILLING_RATE_LIMIT_BASIC": UNREACHED,
                    "BILLING_LOG_LEVEL": "WARNING",
                },
            )
            try:
                key, period_start = signup(serve.base_url, serve.operator_key())
                plan = OverloadPlan(
                    host="127.0.0.1",
                    port=serve.port,
                    key=key,
                    period_start=period_start,
                    clients=clients,
                    seconds=seconds,
                    phase=phase,
                )
                figures = loadgen.in_another_process(_load_main, plan)
                figures.update(serve.memory())
                figures["peak_in_flight"] = _peak_in_flight(serve.base_url)
                figures["counted"] = counted(serve.base_url, key)
            finally:
                serve.stop()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if figures["counted"] != figures["stored"]:
        raise RuntimeError(f"{figures['stored']} events acknowledged, {figures['counted']} counted")
    figures["phase"], figures["cap"] = phase, cap
    return figures


def _peak_in_flight(base_url: str) -> int:
    import httpx

    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("billing_requests_in_flight_peak "):
            return int(float(line.split()[1]))
    return 0


def report(
    clients: int, seconds: float, results: list[dict[str, Any]], machine: MachineLoad
) -> str:
    lines = [
        f"Kefu Billing overload benchmark: {clients} clients against one API process for"
        f" {seconds:g} s a phase, single usage events; a 503 is retried after Retry-After;"
        f" client timeout {CLIENT_TIMEOUT_SECONDS:g} s",
        machine.line(),
    ]
    for f in results:
        cap = "no cap" if f["cap"] == UNCAPPED else f"cap {f['cap']}"
        lines += [
            f"{f['phase']} ({cap}):",
            f"  stored            {f['stored'] / f['seconds']:>8,.0f} events/s"
            f" ({f['stored']:,}); p50 {f['ok_p50_ms']:.0f} ms, p99 {f['ok_p99_ms']:.0f} ms,"
            f" max {f['ok_max_ms']:.0f} ms",
            f"  refused (503)     {f['refused'] / f['seconds']:>8,.0f} /s ({f['refused']:,});"
            f" answered in p50 {f['refused_p50_ms']:.1f} ms, p99 {f['refused_p99_ms']:.1f} ms",
            f"  client timeouts   {f['timeouts']:>8,} (at {CLIENT_TIMEOUT_SECONDS:g} s);"
            f" connection errors {f['errors']:,}",
            f"  in flight at most {f['peak_in_flight']:>8,}; server RSS {f['rss_mb']:.0f} MB"
            f" (peak {f['peak_rss_mb']:.0f} MB); counted once: {f['counted']:,}",
        ]
    return "\n".join(lines)


def _load_main(plan_fields: dict[str, Any], sending: Any) -> None:
    plan = OverloadPlan(**plan_fields)
    loadgen.report(lambda: _drive(plan), sending)


def _request(plan: OverloadPlan, body: bytes) -> bytes:
    return (
        f"POST /v1/usage/events HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
        f"Authorization: Bearer {plan.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _drive(plan: OverloadPlan) -> dict[str, Any]:
    ok: list[float] = []
    refused: list[float] = []
    counts = {"stored": 0, "timeouts": 0, "errors": 0}
    deadline = time.monotonic() + plan.seconds

    async def client(number: int) -> None:
        connection: Connection | None = None
        sent = 0
        while time.monotonic() < deadline:
            body = (
                f'{{"transaction_id":"c{number}-{sent}","metric":"orders",'
                f'"occurred_at":"{plan.period_start}","quantity":1}}'
            ).encode()
            try:
                if connection is None:
                    connection = await Connection.open(plan.host, plan.port)
                started = time.perf_counter()
                status, _ = await asyncio.wait_for(
                    connection.call(_request(plan, body)), CLIENT_TIMEOUT_SECONDS
                )
            except TimeoutError:
                counts["timeouts"] += 1
                connection = _closed(connection)
                continue
            except (OSError, asyncio.IncompleteReadError):
                counts["errors"] += 1
                connection = _closed(connection)
                await asyncio.sleep(0.1)
                continue
            took = time.perf_counter() - started
            if status in (200, 201):
                ok.append(took)
                counts["stored"] += 1
                sent += 1
            elif status == 503:
                refused.append(took)
                connection = _closed(connection)  # the server closes a refused connection
                await asyncio.sleep(1.0)  # Retry-After: 1
            else:
                raise RuntimeError(f"unexpected answer {status}")

    started = time.monotonic()
    await asyncio.gather(*(client(number) for number in range(plan.clients)))
    return {
        **counts,
        "seconds": time.monotonic() - started,
        "refused": len(refused),
        "ok_p50_ms": percentile(ok, 0.5) * 1000,
        "ok_p99_ms": percentile(ok, 0.99) * 1000,
        "ok_max_ms": max(ok, default=0.0) * 1000,
        "refused_p50_ms": percentile(refused, 0.5) * 1000,
        "refused_p99_ms": percentile(refused, 0.99) * 1000,
    }


def _closed(connection: Connection | None) -> None:
    if connection is not None:
        connection.close()
