"""`billing demo`, the real command, with the Stripe stand-in: it tells its story on stdout and
leaves the user's database exactly as it found it."""

import asyncio
import os
import re
import subprocess
from pathlib import Path

import asyncpg

from service.db import engine as db_engine
from tests.e2e.conftest import BILLING


async def _every_row(database_url: str) -> dict[str, list[str]]:
    """Every table of the database with all its rows, in a stable order."""
    connection = await asyncpg.connect(**db_engine.asyncpg_config(database_url))
    try:
        tables = [
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        snapshot = {}
        for table in tables:
            rows = await connection.fetch(f'SELECT t::text AS row FROM "{table}" t')
            snapshot[table] = sorted(row["row"] for row in rows)
        return snapshot
    finally:
        await connection.close()


def _billing(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BILLING, *args], capture_output=True, text=True, timeout=240, env=env, check=False
    )


async def test_demo_tells_its_story_and_leaves_the_users_database_untouched(
    fresh_database_url: str, tmp_path: Path
) -> None:
    user_data_dir = tmp_path / "users-embedded-data"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "BILLING_DATA_DIR": str(user_data_dir),
        "COLUMNS": "160",
    }
    env.pop("BILLING_LOG_LEVEL", None)
    # The user's database: migrated, the catalog published, an operator key.
    made = await asyncio.to_thread(
        _billing, "keys", "create", "--role", "operator", "--all-scopes", env=env
    )
    assert made.returncode == 0, made.stderr
    before = await _every_row(fresh_database_url)
    assert before["api_keys"]
    assert before["plan_versions"]

    done = await asyncio.to_thread(_billing, "demo", env=env)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Stripe sync: everything agrees" in out
    assert "Late usage for 2026-09: +500 orders" in out
    assert "[paid]" in out
    # Times for people are in the merchant's zone, and say which.
    assert re.search(r"\d{4}-\d{2}-\d{2} 00:00 – \d{4}-\d{2}-\d{2} 00:00 Asia/Shanghai", out)
    tail = out[out.index("reconciliation") :]
    assert "0 mismatch(es)" in tail
    last_number = [m.start() for m in re.finditer(r"KB-[0-9A-Z]{4,8}-\d{6}", out)][-1]
    assert out.rindex("reconciliation") > last_number  # the summary comes last
    # The story only: no log lines (they come with --verbose).
    assert done.stderr == ""
    assert "[info" not in out
    assert '"level"' not in out

    after = await _every_row(fresh_database_url)
    assert after.keys() == before.keys()
    changed = [table for table in before if before[table] != after[table]]
    assert changed == [], f"billing demo changed the user's tables: {changed}"
    assert not user_data_dir.exists(), "the demo used the user's embedded data directory"
