"""The `billing` command as a person meets it: help that is light to load and shows flags as
flags, mistakes said in one line with a non-zero exit (never a traceback), keys made with the
least scopes unless asked, a worker pass that says what it did, and no warning noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import BILLING

HEAVY = ("litestar", "asyncpg", "stripe", "pyarrow")
SUBCOMMANDS = (
    (), ("serve",), ("worker",), ("migrate",), ("partitions",), ("close-periods",), ("export",),
    ("reconcile",), ("demo",), ("keys",), ("keys", "create"), ("keys", "list"), ("keys", "revoke"),
    ("bench",), ("bench", "usage"), ("bench", "close"), ("bench", "export"), ("bench", "webhooks"),
    ("outbox",), ("outbox", "retry"), ("outbox", "skip"), ("outbox", "resolve"), ("webhooks",),
    ("webhooks", "list"), ("webhooks", "replay"), ("events",), ("events", "list"),
    ("events", "replay"),
)  # fmt: skip

_IMPORTS_AFTER_HELP = """
import json, sys
sys.argv = ["billing", *json.loads(sys.argv[1]), "--help"]
from service import cli
try:
    cli.main()
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
    env.update(COLUMNS="200", **extra)
    return env


def _billing(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BILLING, *args], capture_output=True, text=True, timeout=180, env=_env(**env), check=False
    )


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "billing")
def test_help_loads_no_heavy_library_and_shows_flags_as_flags(command: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER_HELP, json.dumps(list(command))],
        capture_output=True, text=True, timeout=60, env=_env(), check=True,
    )  # fmt: skip
    *help_lines, imported = done.stdout.strip().splitlines()
    loaded = set(json.loads(imported)) & set(HEAVY)
    assert not loaded, f"billing {' '.join(command)} --help imported {sorted(loaded)}"
    help_text = "\n".join(help_lines)
    assert "Usage: billing" in help_text
    assert "<bool>" not in help_text  # a flag takes no value
    assert done.stderr == ""  # no warnings


def test_close_periods_help_lists_dry_run_as_a_flag() -> None:
    help_text = _billing("close-periods", "--help").stdout
    assert "--dry-run  " in help_text or "--dry-run\n" in help_text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("keys", "create"), "Missing option '--role'"),
        (("keys", "create", "--role", "merchant"), "a merchant key needs --merchant-id"),
        (("keys", "create", "--role", "admin"), "'admin' is not one of 'merchant', 'operator'"),
        (("keys", "create", "--role", "operator", "--scope", "finance"), "'finance' is not one"),
        (("export", "invoices", "--from", "2026-13-01", "--to", "2026-12-31", "--out", "x.csv"),
         "'2026-13-01' does not match"),
        (("export", "bills", "--from", "2026-01-01", "--to", "2026-01-31", "--out", "x.csv"),
         "'bills' is not one of 'invoices'"),
        (("export", "invoices", "--from", "2026-01-01", "--to", "2026-01-31", "--out", "x",
          "--format", "pdf"), "'pdf' is not one of 'csv', 'parquet', 'xlsx'"),
        (("outbox", "--status", "stuck"),
         "'stuck' is not one of 'pending', 'in_flight', 'sent', 'parked', 'skipped', 'resolved'"),
        (("reconcile", "--from", "2026-03-31", "--to", "2026-03-01"), "--to is before --from"),
    ],
)  # fmt: skip
def test_a_mistake_is_one_line_and_exit_2_before_anything_starts(
    args: tuple[str, ...], says: str, tmp_path: object
) -> None:
    # A database that does not exist: nothing may reach it before the arguments are checked.
    done = _billing(*args, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert says in line
    assert done.stdout == ""


def test_an_unreachable_database_is_one_line_not_a_traceback() -> None:
    done = _billing("keys", "list", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the database")


def test_keys_create_makes_the_least_scopes_unless_asked(fresh_database_url: str) -> None:
    least = _billing("keys", "create", "--role", "operator", DATABASE_URL=fresh_database_url)
    assert least.returncode == 0, least.stderr
    assert "scopes: billing:read (the least of its role;" in least.stdout
    every = _billing(
        "keys", "create", "--role", "operator", "--all-scopes", DATABASE_URL=fresh_database_url
    )
    assert every.returncode == 0, every.stderr
    assert "support:read" in every.stdout
    assert "finance:read" in every.stdout
    listed = _billing("keys", "list", DATABASE_URL=fresh_database_url).stdout
    assert listed.count("kbo_") == 2
    # No warning noise on the way (platformdirs' runtime dir, ...).
    assert "Warning" not in least.stderr + every.stderr


def test_worker_once_says_what_it_did(fresh_database_url: str) -> None:
    done = _billing("worker", "--once", DATABASE_URL=fresh_database_url, BILLING_ENV="test",
                    BILLING_LOG_LEVEL="WARNING")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "period close: 0 invoice(s) made" in done.stdout
    assert "Stripe webhooks: 0 processed" in done.stdout
    assert "no STRIPE_API_KEY, so nothing was sent" in done.stdout


def test_production_without_a_database_url_is_refused_in_one_line() -> None:
    env = _env(BILLING_ENV="production")
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [BILLING, "migrate"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "BILLING_ENV=production needs DATABASE_URL" in line
    assert "BILLING_ALLOW_EMBEDDED_DATABASE=1" in line


def test_a_parked_push_is_shown_with_its_reason_and_skipped_with_one(
    fresh_database_url: str,
) -> None:
    """`billing outbox` shows a parked row's reason and what it made in Stripe; `skip` takes a
    reason, only for a parked row, and says so in one line otherwise."""
    import asyncio

    import asyncpg

    env = {
        "DATABASE_URL": fresh_database_url,
        "BILLING_ENV": "test",
        "BILLING_LOG_LEVEL": "WARNING",
    }
    assert _billing("migrate", **env).returncode == 0

    async def park() -> int:
        connection = await asyncpg.connect(fresh_database_url)
        try:
            return await connection.fetchval(
                "INSERT INTO stripe_outbox (merchant_id, stream, subject, command, payload,"
                " idempotency_key, status, attempts, last_error, stripe_ids) VALUES"
                " ('00000000-0000-0000-0000-000000000001', 'catalog', 'plan x v1',"
                " 'catalog.plan', '{\"code\": \"x\", \"version\": 1}', 'kefu-outbox-test',"
                " 'parked', 1, '400 : Stripe said no', '{\"product\": \"prod_made\"}')"
                " RETURNING id"
            )
        finally:
            await connection.close()

    row = str(asyncio.run(park()))
    listed = _billing("outbox", **env)
    assert listed.returncode == 0, listed.stderr
    assert "parked" in listed.stdout
    assert "Stripe said no" in listed.stdout
    assert "product prod_made" in listed.stdout

    no_reason = _billing("outbox", "skip", row, **env)
    assert no_reason.returncode == 2
    assert "Missing option '--reason'" in no_reason.stderr
    skipped = _billing("outbox", "skip", row, "--reason", "plan withdrawn", **env)
    assert skipped.returncode == 0, skipped.stderr
    assert f"outbox row {row} skipped" in skipped.stdout
    shown = _billing("outbox", "--status", "skipped", **env)
    assert "plan withdrawn" in shown.stdout
    again = _billing("outbox", "skip", row, "--reason", "twice", **env)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: outbox row {row} is not parked: only a parked row is skipped"
    ]
