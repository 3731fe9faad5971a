"""``billing bench neighbours``: one merchant floods the API; does its neighbour notice?

A fresh embedded PostgreSQL, one ``billing serve`` whose basic tier allows ``--limit`` requests
a second (``BILLING_RATE_LIMIT_BASIC`` over a 10 s window), two basic merchants, and a load
generator in another process. Phase one, no flood: both send single usage events at a steady
pace under their limit. Phase two, the flood: the quiet merchant keeps its pace while the other
sends at five times its limit. Each merchant's latency (p50, p99) and 429s are printed for both
phases, and the quiet merchant's p99 with the flood against without it (the aim: under twice).
Prints figures; asserts nothing about time.
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
from service.bench.server import Server, fresh_database
from service.bench.usage import bench_app

WINDOW_SECONDS = 10
FLOOD_FACTOR = 5


@dataclass(frozen=True)
class NeighboursPlan:
    host: str
    port: int
    quiet_key: str
    flooder_key: str
    period_start: str
    seconds: float
    limit: int
    quiet_rate: float
    """Requests a second each merchant sends when nobody floods (and the quiet one always)."""
    connections: int


@bench_app.command("neighbours")
def neighbours(
    seconds: Annotated[float, typer.Option(help="How long each phase sends.")] = 20.0,
    limit: Annotated[int, typer.Option(help="Requests a second a basic merchant may make.")] = 200,
    quiet_rate: Annotated[
        float, typer.Option(help="Requests a second of the quiet merchant (both, unflooded).")
    ] = 50.0,
    connections: Annotated[int, typer.Option(help="Connections the flooder uses.")] = 32,
) -> None:
    """A merchant flooding at 5× its limit next to a quiet one: both merchants' p50/p99."""
    say = _say
    machine = MachineLoad()
    work_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-neighbours-"))
    try:
        with fresh_database(work_dir) as dsn:
            serve = Server.start(
                dsn,
                work_dir / "server.log",
                extra_env={
                    "BILLING_RATE_LIMIT_BASIC": str(limit * WINDOW_SECONDS),
                    "BILLING_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
                    "BILLING_LOG_LEVEL": "WARNING",
                },
            )
            try:
                operator = serve.operator_key()
                quiet_key, _ = _merchant(serve.base_url, operator, "quiet")
                # Events at the later start: inside both merchants' subscriptions.
                flooder_key, period_start = _merchant(serve.base_url, operator, "flooder")
                plan = NeighboursPlan(
                    host="127.0.0.1",
                    port=serve.port,
                    quiet_key=quiet_key,
                    flooder_key=flooder_key,
                    period_start=period_start,
                    seconds=seconds,
                    limit=limit,
                    quiet_rate=quiet_rate,
                    connections=connections,
                )
                say(f"two phases of {seconds:g} s: without, then with a flood at {FLOOD_FACTOR}×")
                figures = loadgen.in_another_process(_load_main, plan)
            finally:
                serve.stop()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(report(plan, figures, machine.finished()))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _merchant(base_url: str, operator_key: str, name: str) -> tuple[str, str]:
    import httpx

    made = httpx.post(
        f"{base_url}/v1/signup",
        json={
            "merchant": {"name": f"Bench {name}", "contact_email": f"{name}@bench.cn"},
            "plan": "basic",
            "trial_days": 0,
        },
        headers={"Authorization": f"Bearer {operator_key}", "Idempotency-Key": f"bench-{name}"},
        timeout=30,
    )
    made.raise_for_status()
    body = made.json()
    return body["api_key"]["key"], body["subscription"]["current_period_start"]


def report(plan: NeighboursPlan, figures: dict[str, Any], machine: MachineLoad) -> str:
    calm, flood = figures["calm"], figures["flood"]
    ratio = flood["quiet"]["p99_ms"] / calm["quiet"]["p99_ms"] if calm["quiet"]["p99_ms"] else 0
    lines = [
        f"Kefu Billing noisy-neighbour benchmark: one API process, basic tier limited to"
        f" {plan.limit}/s ({plan.limit * WINDOW_SECONDS} per {WINDOW_SECONDS} s window),"
        f" {plan.seconds:g} s a phase, single usage events",
        machine.line(),
    ]
    for title, phase, flood_rate in (
        ("without the flood", calm, plan.quiet_rate),
        (f"with the flood ({FLOOD_FACTOR}× the limit)", flood, plan.limit * FLOOD_FACTOR),
    ):
        lines.append(f"{title}:")
        for who, rate in (("quiet", plan.quiet_rate), ("flooder", flood_rate)):
            f = phase[who]
            lines.append(
                f"  {who:<8} {rate:>6,.0f}/s sent: {f['ok']:>7,} stored, {f['limited']:>7,} 429s;"
                f" p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms"
            )
    lines.append(
        f"quiet merchant's p99 with the flood / without: {ratio:.2f} (aim: under 2);"
        f" 429s to the quiet merchant: {calm['quiet']['limited'] + flood['quiet']['limited']}"
    )
    return "\n".join(lines)


def _load_main(plan_fields: dict[str, Any], sending: Any) -> None:
    plan = NeighboursPlan(**plan_fields)
    loadgen.report(lambda: _drive(plan), sending)


async def _drive(plan: NeighboursPlan) -> dict[str, Any]:
    # The calm phase stays under the limit, so the flood starts on a (nearly) full bucket.
    calm = await _phase(plan, "calm", flood_rate=plan.quiet_rate)
    flood = await _phase(plan, "flood", flood_rate=plan.limit * FLOOD_FACTOR)
    return {"calm": calm, "flood": flood}


async def _phase(plan: NeighboursPlan, name: str, *, flood_rate: float) -> dict[str, Any]:
    deadline = time.monotonic() + plan.seconds
    quiet, flooder = await asyncio.gather(
        _paced(plan, plan.quiet_key, f"q-{name}", plan.quiet_rate, 4, deadline),
        _paced(plan, plan.flooder_key, f"f-{name}", flood_rate, plan.connections, deadline),
    )
    return {"quiet": quiet, "flooder": flooder}


async def _paced(
    plan: NeighboursPlan, key: str, prefix: str, rate: float, connections: int, deadline: float
) -> dict[str, Any]:
    """``rate`` requests a second in all, over ``connections`` connections, each request sent
    on its schedule (or at once when the previous answer came late): how many were stored,
    how many got a 429, and the latency of every answer."""
    latencies: list[float] = []
    counts = {"ok": 0, "limited": 0}

    async def sender(number: int) -> None:
        connection = await Connection.open(plan.host, plan.port)
        interval = connections / rate
        next_at = time.monotonic() + interval * number / connections
        sent = 0
        try:
            while True:
                pause = next_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                if time.monotonic() >= deadline:
                    return
                next_at += interval
                body = (
                    f'{{"transaction_id":"{prefix}-{number}-{sent}","metric":"orders",'
                    f'"occurred_at":"{plan.period_start}","quantity":1}}'
                ).encode()
                request = (
                    f"POST /v1/usage/events HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                started = time.perf_counter()
                status, answer = await connection.call(request)
                latencies.append(time.perf_counter() - started)
                sent += 1
                if status == 429:
                    counts["limited"] += 1
                elif status in (200, 201):
                    counts["ok"] += 1
                else:
                    raise RuntimeError(f"unexpected answer {status}: {answer[:200]!r}")
        finally:
            connection.close()

    await asyncio.gather(*(sender(number) for number in range(connections)))
    return {
        **counts,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
