"""``billing bench gauntlet``: everything going wrong at once, then an audit of what is left.

On a fresh embedded PostgreSQL (or a new database on ``DATABASE_URL``'s server, which the
gauntlet never kills), it runs API servers and workers as real processes and the Stripe stand-in
(duplicating and shuffling its webhooks). For ``--duration`` seconds clients report usage for
several merchants on a test clock that keeps moving, so periods end and workers close them and
push the invoices to Stripe, while a seeded fault schedule SIGKILLs API servers, workers and
PostgreSQL and starts them again, and opens Stripe outages. Then the faults stop, the clients
finish what they hold, the clock moves past the last grace window, the system drains, and
`audit` checks the ledger, the invoices and Stripe. It prints the figures and exits 1 on any
discrepancy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from plans.periods import calendar_period_containing
from service.bench.machine import MachineLoad
from service.bench.usage import bench_app

if TYPE_CHECKING:
    from service.bench.gauntlet.clients import Endpoints, Merchant
    from service.bench.gauntlet.fleet import Fleet

SECRET = "whsec_gauntlet_" + "7" * 24
START = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(hours=8)  # 1 January, Asia/Shanghai
TIERS = ("basic", "advanced", "custom")
GRACE = timedelta(hours=48)  # BILLING_USAGE_GRACE_HOURS, as the processes run with it
ZONE = "Asia/Shanghai"  # the merchants' zone (signup's default): their months start on the 1st


def period_end_after(moment: datetime) -> datetime:
    """The end of the monthly period ``moment`` falls in (every merchant started on the 1st at
    midnight in its zone, on a calendar-month plan)."""
    return calendar_period_containing(moment, ZONE).end


@dataclass(frozen=True)
class Options:
    duration: float = 180.0
    kills: int = 100
    outages: int | None = None
    seed: int = 1
    apis: int = 2
    workers: int = 2
    merchants: int = 6
    clock_step_days: float = 6.0
    clock_every_seconds: float = 3.0
    client_pause_seconds: float = 0.05
    max_batch: int = 50
    drain_seconds: float = 300.0

    @property
    def stripe_outages(self) -> int:
        return self.outages if self.outages is not None else max(1, self.kills // 10)


@dataclass
class Result:
    options: Options
    schedule: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    discrepancies: list[str] = field(default_factory=list)
    machine: MachineLoad = field(default_factory=MachineLoad)


@bench_app.command("gauntlet")
def gauntlet(
    duration: Annotated[float, typer.Option(help="Seconds of faults and traffic.")] = 180.0,
    kills: Annotated[
        int, typer.Option(help="SIGKILLs in all (API servers, workers, PostgreSQL).")
    ] = 100,
    outages: Annotated[
        int | None, typer.Option(help="Stripe outage windows (default: kills ÷ 10).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule and the clients.")] = 1,
    apis: Annotated[int, typer.Option(min=1, help="API server processes.")] = 2,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    merchants: Annotated[int, typer.Option(min=1, help="Merchants sending usage.")] = 6,
    drain_seconds: Annotated[
        float, typer.Option(help="How long the system may take to drain after the faults.")
    ] = 300.0,
) -> None:
    """Kill anything at any moment, then audit: every acknowledged event counted once, one
    invoice per ended period, each pushed to Stripe once, every webhook applied once. Exits 1
    on any discrepancy."""
    options = Options(
        duration=duration,
        kills=kills,
        outages=outages,
        seed=seed,
        apis=apis,
        workers=workers,
        merchants=merchants,
        drain_seconds=drain_seconds,
    )
    result = run(options, say=lambda text: print(text, file=sys.stderr, flush=True))
    result.machine.finished()
    print(report(result))
    if result.discrepancies:
        raise typer.Exit(1)


def run(options: Options, *, say: Any = print) -> Result:
    """The whole gauntlet (see the module's docstring); returns what it found."""
    from service.bench.gauntlet.fleet import Fleet, process_environment, run_command
    from service.bench.gauntlet.postgres import OwnPostgres
    from service.db import engine as db_engine
    from service.settings import Settings
    from webhooks.standin import StandIn

    result = Result(options=options)
    work_dir = Path(tempfile.mkdtemp(prefix="kefu-gauntlet-"))
    external = Settings.from_env().database.url
    postgres = None
    if external:
        name = f"kefu_gauntlet_{uuid.uuid4().hex[:8]}"
        dsn = db_engine._with_database(external, name)
        # Its name only: the URL may hold a password.
        say(f"PostgreSQL: a new database {name} on DATABASE_URL's server (never killed)")
    else:
        postgres = OwnPostgres.start(work_dir / "postgres")
        dsn = postgres.dsn("gauntlet")
        say(f"PostgreSQL: a fresh embedded server in {work_dir}, killed and restarted by the run")
    standin = StandIn.start(port=0, webhook_secret=SECRET, timeout_seconds=1.0)
    standin.webhooks.configure(duplicates=2, shuffle_window=8, seed=options.seed)
    env = process_environment(
        {
            "DATABASE_URL": dsn,
            "BILLING_ENV": "production",
            "BILLING_ALLOW_TEST_CLOCKS": "1",
            "BILLING_LOG_FORMAT": "json",
            "BILLING_LOG_LEVEL": "WARNING",
            "BILLING_DB_POOL_MAX": "8",
            "BILLING_DB_WAIT_SECONDS": "300",
            "BILLING_API_PROCESSES": str(options.apis),
            "BILLING_USAGE_GRACE_HOURS": str(int(GRACE.total_seconds() // 3600)),
            "BILLING_WORKER_BACKOFF_MAX_SECONDS": "2",
            "STRIPE_API_KEY": "sk_test_gauntlet",
            "STRIPE_API_BASE": standin.base_url,
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "STRIPE_TIMEOUT_SECONDS": "5",
            "STRIPE_OUTBOX_LEASE_SECONDS": "10",
        }
    )
    fleet = Fleet.make(
        apis=options.apis,
        workers=options.workers,
        env=env,
        log_dir=work_dir,
        worker_interval=0.3,
    )
    # Stripe's endpoint is an API server from the start (the catalog is pushed at once).
    standin.webhooks.url = f"{fleet.apis[0].base_url}/webhooks/stripe"
    has_failed = True
    try:
        say("billing migrate, an operator key, the servers and workers ...")
        run_command(["migrate"], env, work_dir / "setup.log")
        made = run_command(
            ["keys", "create", "--role", "operator", "--all-scopes"], env, work_dir / "setup.log"
        )
        operator_key = _key_in(made)
        for slot in fleet.slots:
            slot.start()
        asyncio.run(_drive(options, result, fleet, postgres, standin, dsn, operator_key, say))
        has_failed = False
    finally:
        fleet.stop_all()
        standin.stop()
        if postgres is not None:
            postgres.stop()
        if has_failed or result.discrepancies:
            say(f"logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _key_in(output: str) -> str:
    found = re.search(r"\b(kbo_[A-Za-z0-9_\-]{20,})", output)
    if found is None:
        raise RuntimeError("billing keys create printed no key")
    return found.group(1)


class _Clock:
    """The test clock as the clients know it: the last time an advance was acknowledged."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.advances = 0

    def __call__(self) -> datetime:
        return self.now


async def _drive(
    options: Options,
    result: Result,
    fleet: Fleet,
    postgres: Any,
    standin: Any,
    dsn: str,
    operator_key: str,
    say: Any,
) -> None:
    import asyncpg

    from service.bench.gauntlet import audit
    from service.bench.gauntlet.clients import Client, Endpoints, Tally
    from service.bench.gauntlet.faults import FaultRunner, make_schedule

    for slot in fleet.slots:
        if not await slot.wait_up():
            raise RuntimeError(f"{slot.name} did not start: see {slot.log_path}")

    def point_webhooks() -> None:
        running = fleet.running_apis()
        standin.webhooks.url = f"{running[0].base_url}/webhooks/stripe" if running else None

    point_webhooks()
    endpoints = Endpoints([slot.base_url for slot in fleet.apis])
    operator = _Operator(endpoints, operator_key)
    clock = _Clock(START)
    clock_id = await operator.until_done(
        "POST", "/v1/test-clocks", {"frozen_time": START.isoformat(), "name": "gauntlet"}
    )
    signed_up = [
        await _sign_up(operator, clock_id["id"], n, TIERS[n % len(TIERS)], options.seed)
        for n in range(options.merchants)
    ]
    merchants = [merchant for merchant, _ in signed_up]
    say(f"{len(merchants)} merchants signed up on a test clock at {START:%Y-%m-%d %H:%M} UTC")
    # Every other merchant saves a card through its payment-setup link (its invoices are then
    # charged); the others are sent theirs, and pay them on Stripe's page at the end.
    with_cards = signed_up[::2]
    for merchant, setup_url in with_cards:
        await _save_card(endpoints, merchant, setup_url, standin)
    say(f"cards saved through payment-setup links: {', '.join(m.prefix for m, _ in with_cards)}")

    schedule = make_schedule(
        seed=options.seed,
        duration=options.duration,
        kills=options.kills,
        outages=options.stripe_outages,
        apis=options.apis,
        workers=options.workers,
        kills_postgres=postgres is not None,
    )
    result.schedule = [fault.describe() for fault in schedule]
    say(f"fault schedule (seed {options.seed}):\n" + "\n".join(result.schedule))
    runner = FaultRunner(
        fleet=fleet,
        postgres=postgres,
        standin=standin,
        schedule=schedule,
        say=say,
        on_apis_changed=point_webhooks,
    )
    tally = Tally()
    stop_clients, stop_faults, stop_background = asyncio.Event(), asyncio.Event(), asyncio.Event()
    clients = [
        asyncio.create_task(
            Client(
                merchant,
                endpoints,
                tally,
                clock=clock,
                seed=options.seed * 1000 + n,
                pause_seconds=options.client_pause_seconds,
                max_batch=options.max_batch,
            ).run(stop_clients)
        )
        for n, merchant in enumerate(merchants)
    ]
    background = [
        asyncio.create_task(_move_clock(operator, clock_id["id"], clock, options, stop_background)),
        asyncio.create_task(_stripe_retries(standin, stop_background)),
    ]
    started = time.monotonic()
    faults = asyncio.create_task(runner.run(stop_faults))
    watching = asyncio.create_task(runner.watch(stop_background))
    await asyncio.sleep(options.duration)
    stop_faults.set()
    say("faults over: bringing everything back, then draining")
    await faults
    await runner.bring_everything_back()
    stop_clients.set()
    await asyncio.gather(*clients)
    stop_background.set()
    await background[0]
    await watching
    # Past the end of the period the last events fell in, and its grace window: every event
    # sent is then in an ended period that must have its invoice (however few advances a busy
    # machine managed during the run).
    final = period_end_after(clock.now) + GRACE + timedelta(hours=1)
    await operator.until_done(
        "POST", f"/v1/test-clocks/{clock_id['id']}/advance", {"frozen_time": final.isoformat()}
    )
    clock.now = final
    drained_after = await _drain(dsn, standin, options.drain_seconds)
    # The merchants without a card pay what they were sent, on the hosted invoice page (its
    # payment comes back as webhooks like any other), then everything settles again.
    paid_on_page = await asyncio.to_thread(_pay_sent_invoices, standin)
    if drained_after is not None and paid_on_page:
        drained_again = await _drain(dsn, standin, options.drain_seconds)
        drained_after = None if drained_again is None else drained_after + drained_again
    background[1].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await background[1]
    if drained_after is None:
        result.discrepancies.append(
            f"the system did not drain within {options.drain_seconds:g} s after the faults"
        )
    connection = await asyncpg.connect(dsn)
    try:
        findings = await audit.audit(connection, standin, tally, merchants, grace=GRACE)
    finally:
        await connection.close()
    result.discrepancies += tally.refused[:20] + findings.discrepancies
    if len(tally.refused) > 20:
        result.discrepancies.append(f"... and {len(tally.refused) - 20} more refused events")
    deliveries = standin.webhooks.deliveries()
    result.figures.update(findings.figures)
    result.figures.update(
        {
            "seconds": time.monotonic() - started,
            "drained_after": drained_after,
            "paid_on_page": paid_on_page,
            "with_cards": len(with_cards),
            "events_acknowledged": tally.events_acknowledged(),
            "events_sent": sum(len(ids) for ids in tally.sent.values()),
            "requests": dict(tally.requests),
            "retries": dict(tally.retries),
            "kills": dict(runner.kills),
            "outage_seconds": runner.outage_seconds,
            "outages": sum(1 for fault in schedule if fault.kind == "stripe"),
            "recoveries": runner.recoveries,
            "webhook_posts": len(deliveries),
            "webhook_posts_failed": sum(1 for d in deliveries if not d.is_success),
            "starts": {slot.name: slot.starts for slot in fleet.slots},
            "clock": clock.now,
            "advances": clock.advances,
            "unexpected_exits": runner.unexpected_exits,
        }
    )
    if runner.unexpected_exits:
        result.discrepancies.append(
            "processes that exited without being killed or never came up: "
            + ", ".join(runner.unexpected_exits)
        )
    errors = _errors_logged(fleet)
    result.figures["errors_logged"] = errors
    if errors:
        result.discrepancies.append(
            "errors logged (a fault handled is a warning at most): "
            + ", ".join(f"{where}: {event} ×{count}" for (where, event), count in errors.items())
        )


def _errors_logged(fleet: Fleet) -> dict[tuple[str, str], int]:
    """Error lines in the servers' and workers' logs, by process kind and event."""
    import json
    from collections import Counter

    found: Counter[tuple[str, str]] = Counter()
    for slot in fleet.slots:
        kind = "api" if slot.is_api else "worker"
        for line in slot.log_path.read_text(errors="replace").splitlines():
            is_error = '"level":"error"' in line or '"level":"critical"' in line
            if line.startswith("{") and is_error:
                with contextlib.suppress(ValueError):
                    found[(kind, str(json.loads(line).get("event", "?"))[:80])] += 1
    return dict(found)


class _Operator:
    """The operator's requests (clock, signup), retried like any client's until done."""

    def __init__(self, endpoints: Endpoints, key: str) -> None:
        self.endpoints = endpoints
        self.headers = {"Authorization": f"Bearer {key}"}
        self.turn = 0

    async def until_done(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        import httpx

        from service.bench.gauntlet.clients import retry_after

        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            while True:
                url = self.endpoints.pick(self.turn) + path
                try:
                    answer = await http.request(
                        method, url, json=body, headers={**self.headers, **(headers or {})}
                    )
                except httpx.HTTPError:
                    self.turn += 1
                    await asyncio.sleep(0.3)
                    continue
                if answer.status_code in (429, 500, 502, 503, 504):
                    self.turn += 1
                    await asyncio.sleep(retry_after(answer))
                    continue
                if answer.status_code >= 400:
                    raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
                return dict(answer.json())


async def _sign_up(
    operator: _Operator, clock_id: str, n: int, tier: str, seed: int
) -> tuple[Merchant, str | None]:
    """A merchant made through signup, and its payment-setup link (None on a replay: the link,
    like the key, is shown once)."""
    made = await operator.until_done(
        "POST",
        "/v1/signup",
        {
            "merchant": {"name": f"Gauntlet shop {n + 1}", "contact_email": f"shop{n + 1}@g.cn"},
            "plan": tier,
            "trial_days": 0,
            "test_clock_id": clock_id,
        },
        headers={"Idempotency-Key": f"gauntlet-{seed}-signup-{n}"},
    )
    from service.bench.gauntlet.clients import Merchant

    merchant_id = made["merchant"]["id"]
    key = (made.get("api_key") or {}).get("key")
    if key is None:  # a replay (the first answer was lost): the key is shown only once
        issued = await operator.until_done(
            "POST",
            "/v1/api-keys",
            {"role": "merchant", "merchant_id": merchant_id, "name": "gauntlet"},
        )
        key = issued["key"]
    setup = made.get("payment_setup") or {}
    return Merchant(id=merchant_id, key=key, tier=tier, prefix=f"m{n + 1}"), setup.get("url")


async def _save_card(
    endpoints: Endpoints, merchant: Merchant, setup_url: str | None, standin: Any
) -> None:
    """The merchant opens its payment-setup link (no key) and saves a card on the Checkout page
    it is sent to. The link answers 503 until a worker has made the merchant's Stripe customer;
    a replayed signup showed no link, so the merchant asks for a fresh one."""
    import httpx

    from service.bench.gauntlet.clients import retry_after

    turn = 0
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        while True:
            base = endpoints.pick(turn)
            try:
                if setup_url is None:
                    answer = await http.post(
                        f"{base}/v1/merchants/me/payment-setup",
                        json={},
                        headers={"Authorization": f"Bearer {merchant.key}"},
                    )
                    if answer.status_code == 201:
                        setup_url = str(answer.json()["url"])
                        continue
                else:
                    answer = await http.get(base + urlsplit(setup_url).path)
                    if answer.status_code == 303:
                        session_id = answer.headers["location"].rsplit("/", 1)[-1]
                        await asyncio.to_thread(standin.hosted.complete_checkout, session_id)
                        return
            except httpx.HTTPError:
                turn += 1
                await asyncio.sleep(0.3)
                continue
            if answer.status_code not in (429, 500, 502, 503, 504):
                raise RuntimeError(f"{merchant.prefix}'s card: {answer.status_code} {answer.text}")
            turn += 1
            await asyncio.sleep(retry_after(answer))


def _pay_sent_invoices(standin: Any) -> int:
    """Every invoice sent to be paid (no card saved) and still open is paid on its hosted page."""
    sent = [
        invoice["id"]
        for invoice in standin.objects("invoice")
        if invoice["status"] == "open" and invoice.get("collection_method") == "send_invoice"
    ]
    for invoice_id in sent:
        standin.hosted.pay_invoice(invoice_id)
    return len(sent)


async def _move_clock(
    operator: _Operator, clock_id: str, clock: _Clock, options: Options, stop: asyncio.Event
) -> None:
    """Every few seconds the test clock moves a few days on, so periods keep ending."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=options.clock_every_seconds)
        if stop.is_set():
            return
        target = clock.now + timedelta(days=options.clock_step_days)
        await operator.until_done(
            "POST", f"/v1/test-clocks/{clock_id}/advance", {"frozen_time": target.isoformat()}
        )
        clock.now = target
        clock.advances += 1


async def _stripe_retries(standin: Any, stop: asyncio.Event) -> None:
    """Stripe retries a webhook it could not deliver (here: every two seconds)."""
    while not stop.is_set():
        standin.webhooks.resend_undelivered()
        await asyncio.sleep(2)


_BUSY = """
SELECT
  (SELECT count(*) FROM stripe_outbox WHERE status IN ('pending', 'in_flight')) AS outbox,
  (SELECT count(*) FROM stripe_inbox WHERE status = 'pending') AS inbox,
  (SELECT count(*) FROM subscription_periods sp
     JOIN merchants m ON m.id = sp.merchant_id JOIN test_clocks tc ON tc.id = m.test_clock_id
     WHERE sp.status = 'ended' AND sp.period_end + $1::interval <= tc.frozen_time
       AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.merchant_id = sp.merchant_id
         AND i.subscription_id = sp.subscription_id AND i.period_start = sp.period_start
         AND i.kind = 'period')) AS periods,
  (SELECT count(*) FROM subscriptions s
     JOIN merchants m ON m.id = s.merchant_id JOIN test_clocks tc ON tc.id = m.test_clock_id
     WHERE s.status <> 'canceled' AND s.current_period_end <= tc.frozen_time) AS rolls
"""


async def _drain(dsn: str, standin: Any, seconds: float) -> float | None:
    """Wait until nothing is left to do (twice in a row, a second apart); the seconds it took,
    or None if it did not happen within ``seconds``."""
    import asyncpg

    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < seconds:
        standin.webhooks.resend_undelivered()
        try:
            connection = await asyncpg.connect(dsn)
            try:
                busy = await connection.fetchrow(_BUSY, GRACE)
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError):
            busy = None
        is_quiet = (
            busy is not None
            and not any(busy.values())
            and standin.webhooks.wait_idle(0)
            and not standin.webhooks.undelivered()
        )
        quiet = quiet + 1 if is_quiet else 0
        if quiet >= 2:
            return time.monotonic() - started
        await asyncio.sleep(1)
    return None


def report(result: Result) -> str:
    """The figures, then the discrepancies (or that there are none)."""
    f = result.figures
    options = result.options
    kills = f.get("kills", {})
    retries = f.get("retries", {})
    lines = [
        f"Kefu Billing gauntlet: seed {options.seed}, {options.duration:g} s of faults,"
        f" {options.apis} API servers, {options.workers} workers, {options.merchants} merchants",
        result.machine.line(),
        f"kills              {sum(kills.values())}: API servers {kills.get('api', 0)},"
        f" workers {kills.get('worker', 0)}, PostgreSQL {kills.get('postgres', 0)}",
        f"Stripe outages     {f.get('outages', 0)}, {f.get('outage_seconds', 0):.1f} s in all"
        " (500, 503, 429, timeouts, answers lost)",
        f"usage              {f.get('events_acknowledged', 0):,} events acknowledged of"
        f" {f.get('events_sent', 0):,} sent ({f.get('requests', {}).get('single', 0):,} single,"
        f" {f.get('requests', {}).get('batch', 0):,} batch requests);"
        f" {f.get('events_counted', 0):,} counted",
        "client retries     "
        + (", ".join(f"{why} {count:,}" for why, count in sorted(retries.items())) or "none"),
    ]
    for n, recovery in enumerate(f.get("recoveries", []), start=1):
        ready = (
            f"API servers ready {recovery.api_ready_seconds * 1000:.0f} ms after"
            if recovery.api_ready_seconds is not None
            else "API servers NOT ready"
        )
        lines.append(
            f"PostgreSQL kill {n:<3} down {recovery.down_seconds:.2f} s (crash recovery"
            f" {recovery.start_seconds:.2f} s); {ready}"
        )
    lines += [
        f"test clock         {START:%Y-%m-%d} → {f['clock']:%Y-%m-%d} in {f.get('advances', 0)}"
        " advances",
        f"invoices           {f.get('invoices', 0):,} ({f.get('periods_ended', 0):,} ended"
        f" periods); {f.get('stripe_invoices', 0):,} in Stripe, {f.get('stripe_paid', 0):,}"
        f" paid there ({f.get('with_cards', 0)} merchants' by the card saved through their"
        f" payment-setup link, {f.get('paid_on_page', 0):,} sent and paid on Stripe's page)",
        f"Stripe objects     {f.get('stripe_objects', {})}",
        f"webhooks           {f.get('stripe_events', 0):,} Stripe events,"
        f" {f.get('webhook_posts', 0):,} POSTs ({f.get('webhook_posts_failed', 0):,} failed,"
        " each sent twice and shuffled); "
        f"inbox {f.get('inbox', 0):,} events",
        f"outbox             {f.get('outbox', {})}",
        f"drained            {_seconds(f.get('drained_after'))} after the faults stopped;"
        f" whole run {f.get('seconds', 0):.0f} s",
    ]
    if result.discrepancies:
        lines.append(f"DISCREPANCIES      {len(result.discrepancies)}")
        lines += [f"  - {item}" for item in result.discrepancies]
    else:
        lines.append("discrepancies      none")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
