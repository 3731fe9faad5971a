"""The fault schedule: made up front from a seed (so a run can be repeated and is printed before
it starts), then carried out while the clients and workers work.

Kinds: ``api`` (SIGKILL an API server, start it again after ``down_seconds``), ``worker`` (the
same for a worker), ``postgres`` (SIGKILL the PostgreSQL server the gauntlet started, every one
of its processes, and start it again: crash recovery) and ``stripe`` (the Stripe stand-in
refuses or loses every request for ``down_seconds``: 500, 503, 429, a timeout, or carried out
with the answer lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.bench.gauntlet.fleet import Fleet, Slot
from service.bench.gauntlet.postgres import OwnPostgres

STRIPE_FAULTS: tuple[int | str, ...] = (500, 503, 429, "timeout", "lost")


@dataclass(frozen=True)
class Fault:
    at_seconds: float
    kind: str
    target: int
    """Which API server or worker (an index; the next running one if it is down then)."""
    down_seconds: float
    stripe_status: int | str | None = None

    def describe(self) -> str:
        what = {
            "api": f"SIGKILL api-{self.target + 1}",
            "worker": f"SIGKILL worker-{self.target + 1}",
            "postgres": "SIGKILL PostgreSQL (every process)",
            "stripe": f"Stripe outage ({self.stripe_status})",
        }[self.kind]
        return f"{self.at_seconds:7.2f} s  {what}, {self.down_seconds:.1f} s down"


def make_schedule(
    *,
    seed: int,
    duration: float,
    kills: int,
    outages: int,
    apis: int,
    workers: int,
    kills_postgres: bool,
) -> list[Fault]:
    """``kills`` kills spread over the run (a fifth of them PostgreSQL's when it is ours, the
    rest halved between API servers and workers) and ``outages`` Stripe outages."""
    rng = random.Random(seed)  # noqa: S311 - a schedule, not a secret
    postgres = round(kills / 5) if kills_postgres else 0
    api = (kills - postgres + 1) // 2
    worker = kills - postgres - api
    kinds = ["postgres"] * postgres + ["api"] * api + ["worker"] * worker
    rng.shuffle(kinds)
    first, last = min(3.0, duration * 0.1), duration * 0.9
    faults = []
    for kind in kinds:
        down = rng.uniform(0.5, 2.5) if kind == "postgres" else rng.uniform(0.2, 2.0)
        target = rng.randrange(apis if kind == "api" else workers if kind == "worker" else 1)
        faults.append(Fault(rng.uniform(first, last), kind, target, down))
    for n in range(outages):
        faults.append(
            Fault(
                rng.uniform(first, last),
                "stripe",
                0,
                rng.uniform(2.0, 6.0),
                STRIPE_FAULTS[n % len(STRIPE_FAULTS)],
            )
        )
    return sorted(faults, key=lambda fault: fault.at_seconds)


@dataclass
class Recovery:
    """One PostgreSQL kill: how long it was down, and how long after it accepted connections
    again every API server was ready (``/readyz`` 200) without being restarted."""

    down_seconds: float
    start_seconds: float
    api_ready_seconds: float | None


@dataclass
class FaultRunner:
    """Carries the schedule out (see the module's docstring)."""

    fleet: Fleet
    postgres: OwnPostgres | None
    standin: Any
    schedule: list[Fault]
    say: Callable[[str], None]
    on_apis_changed: Callable[[], None]
    kills: Counter[str] = field(default_factory=Counter)
    outage_seconds: float = 0.0
    recoveries: list[Recovery] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    """Processes found gone that no fault killed (each is started again)."""
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _postgres_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stripe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        for fault in self.schedule:
            wait = started + fault.at_seconds - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    pass
                else:
                    break
            task = asyncio.create_task(self._carry_out(fault))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        await self.settle()

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: a process that exits by itself is a finding; it is started again."""
        while not stop.is_set():
            for slot in self.fleet.slots:
                if not slot.is_running and not slot.is_down_on_purpose and slot.process:
                    code = slot.process.returncode
                    self.unexpected_exits.append(f"{slot.name} (exit {code}, see {slot.log_path})")
                    self.say(f"  {slot.name} exited by itself (exit {code}): starting it again")
                    await self._start(slot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    async def settle(self) -> None:
        """Wait for every fault in progress to end (servers started again, outages over)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def _carry_out(self, fault: Fault) -> None:
        if fault.kind == "stripe":
            async with self._stripe_lock:  # one outage at a time: each ends when it says
                self.say(
                    f"  fault: Stripe outage ({fault.stripe_status}) for {fault.down_seconds:.1f} s"
                )
                self.standin.start_outage(status=fault.stripe_status)
                await asyncio.sleep(fault.down_seconds)
                self.standin.end_outage()
                self.outage_seconds += fault.down_seconds
        elif fault.kind == "postgres":
            await self._kill_postgres(fault)
        else:
            await self._kill_slot(fault)

    async def _kill_slot(self, fault: Fault) -> None:
        slots = self.fleet.apis if fault.kind == "api" else self.fleet.workers
        ordered = slots[fault.target :] + slots[: fault.target]
        deadline = time.monotonic() + 60
        # Every one of them is down (killed a moment ago): the kill waits for one to be back.
        while (victim := next((slot for slot in ordered if slot.is_running), None)) is None:
            if time.monotonic() > deadline:
                self.say(f"  fault: no {fault.kind} came back within 60 s to be killed, skipped")
                return
            await asyncio.sleep(0.1)
        if not victim.kill():
            return
        self.kills[fault.kind] += 1
        self.say(f"  fault: SIGKILL {victim.name}, back in {fault.down_seconds:.1f} s")
        self.on_apis_changed()
        await asyncio.sleep(fault.down_seconds)
        await self._start(victim)

    async def _start(self, slot: Slot) -> None:
        slot.start()
        # Killed again by the schedule while it was starting: not a finding. Gone by itself is
        # (``watch`` reports it); running without answering /healthz in two minutes is too.
        if not await slot.wait_up() and not slot.is_down_on_purpose and slot.is_running:
            self.unexpected_exits.append(f"{slot.name} (never answered, see {slot.log_path})")
            self.say(f"  {slot.name} did not come up; see {slot.log_path}")
        self.on_apis_changed()

    async def _kill_postgres(self, fault: Fault) -> None:
        if self.postgres is None:
            return
        async with self._postgres_lock:
            postgres = self.postgres
            await asyncio.to_thread(postgres.kill)
            self.kills["postgres"] += 1
            self.say(f"  fault: SIGKILL PostgreSQL, back in {fault.down_seconds:.1f} s")
            await asyncio.sleep(fault.down_seconds)
            start_seconds = await asyncio.to_thread(postgres.restart)
            up_at = time.monotonic()
            ready = await self._apis_ready(within=60)
            recovery = Recovery(
                down_seconds=fault.down_seconds + start_seconds,
                start_seconds=start_seconds,
                api_ready_seconds=(time.monotonic() - up_at) if ready else None,
            )
            self.recoveries.append(recovery)
            self.say(
                f"  PostgreSQL back after {recovery.down_seconds:.2f} s (crash recovery"
                f" {start_seconds:.2f} s); API servers ready"
                + (f" {recovery.api_ready_seconds:.3f} s later" if ready else ": NOT within 60 s")
            )

    async def _apis_ready(self, within: float) -> bool:
        """Every API server that was serving when PostgreSQL came back answers ``/readyz`` 200
        (none restarted for it; one still starting up is not counted)."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            serving = []
            for slot in self.fleet.running_apis():
                try:
                    if (await http.get(f"{slot.base_url}/healthz")).status_code == 200:
                        serving.append(slot)
                except httpx.HTTPError:
                    pass
            while time.monotonic() < deadline:
                ready = True
                for slot in serving:
                    try:
                        ready = (await http.get(f"{slot.base_url}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        ready = False
                    if not ready:
                        break
                if ready:
                    return True
                await asyncio.sleep(0.01)
        return False

    async def bring_everything_back(self) -> None:
        """After the faults: PostgreSQL and every server and worker running, no outage."""
        await self.settle()
        self.standin.end_outage()
        if self.postgres is not None and not self.postgres.processes():
            await asyncio.to_thread(self.postgres.restart)
        for slot in self.fleet.slots:
            if not slot.is_running:
                await self._start(slot)
