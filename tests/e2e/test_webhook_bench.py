"""``billing bench webhooks`` runs end to end and prints its figures, the CPU per event and the
machine's load around it included (a tiny run: it measures nothing worth keeping and asserts no
speed)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.conftest import BILLING, MACHINE_LINE

# Its own (embedded) PostgreSQL, not TEST_DATABASE_URL's: not run again on the Citus cluster.
pytestmark = pytest.mark.own_postgres


def test_the_webhook_benchmark_prints_rate_cpu_and_stored_once() -> None:
    finished = subprocess.run(
        [BILLING, "bench", "webhooks", "--events", "300", "--concurrency", "4"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    printed = finished.stdout
    assert re.search(r"webhook intake: 300 signed events in [\d.]+ s = [\d,]+ events/s", printed)
    assert re.search(
        r"CPU per event: server \d+ µs, PostgreSQL \d+ µs, load generator \d+ µs", printed
    )
    assert "stored once: 300 rows" in printed
    assert re.search(MACHINE_LINE, printed), printed
