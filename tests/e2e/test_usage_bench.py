"""``billing bench usage`` runs end to end and prints its figures (a tiny run: it measures
nothing worth keeping, and asserts no speed)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.conftest import BILLING

# Its own (embedded) PostgreSQL, not TEST_DATABASE_URL's: not run again on the Citus cluster
# (`make bench-citus` runs the benchmark there).
pytestmark = pytest.mark.own_postgres

MACHINE = (
    r"machine\s+\d+ CPUs; load average \(1 min, 5 min\) [\d.]+, [\d.]+ before;"
    r" [\d.]+, [\d.]+ after"
)


def test_the_usage_benchmark_prints_every_figure() -> None:
    finished = subprocess.run(
        [
            BILLING,
            "bench",
            "usage",
            "--events",
            "1000",
            "--batch-size",
            "500",
            "--single",
            "100",
            "--concurrency",
            "8",
            "--summary-reads",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    printed = finished.stdout
    for figure in (
        r"batch ingest\s+[\d,]+ events/s",
        r"[\d,]+ rows/s COPY; [\d,]+ rows/s batched upsert",
        r"batch / upsert\s+\d+\.\d\d",
        r"single-event\s+[\d,]+ events/s\s+at 8 concurrent clients; latency p50 [\d.]+ ms, p99",
        r"summary read\s+p50 [\d.]+ ms, p99 [\d.]+ ms with 1,100 events in the period",
        r"server RSS\s+[\d,]+ MB",
        r"counted once\s+1,100 of 1,100 events sent",
    ):
        assert re.search(figure, printed), (figure, printed)
    # The machine's load before and after the run (the machines are shared).
    assert re.search(MACHINE, printed), printed
