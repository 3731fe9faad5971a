"""`billing bench close` runs with one command and prints its figures (a small run here)."""

import subprocess

import pytest

from tests.e2e.conftest import BILLING

# Its own (embedded) PostgreSQL, not TEST_DATABASE_URL's: not run again on the Citus cluster
# (`make bench-citus` runs the benchmark there).
pytestmark = pytest.mark.own_postgres


def test_close_benchmark_prints_its_figures() -> None:
    done = subprocess.run(
        [BILLING, "bench", "close", "--subscriptions", "200", "--events", "20000"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "setup: 200 subscriptions, 20,000 usage events" in done.stdout
    assert "close: 200 period invoices by 2 worker process(es)" in done.stdout
    assert "one invoice per period: yes" in done.stdout
