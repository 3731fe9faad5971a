"""``billing bench usage`` runs end to end and prints its figures (a tiny run: it measures
nothing worth keeping, and asserts no speed), with a preloaded history (whose past month the
bench itself checks is counted exactly) and two server processes; a history the disk cannot
hold is refused before anything starts."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.conftest import BILLING, MACHINE_LINE

# Its own (embedded) PostgreSQL, not TEST_DATABASE_URL's: not run again on the Citus cluster
# (`make bench-citus` runs the benchmark there).
pytestmark = pytest.mark.own_postgres


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
            "--history",
            "3000",
            "--history-months",
            "3",
            "--server-workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,  # a busy shared machine: two server processes start slowly
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    printed = finished.stdout
    for figure in (
        r"batch ingest\s+[\d,]+ events/s",
        r"[\d,]+ rows/s COPY; [\d,]+ rows/s batched upsert",
        r"batch / upsert\s+\d+\.\d\d",
        r"CPU per row\s+upsert: PostgreSQL [\d.]+ µs, client [\d.]+ µs; batch: server [\d.]+ µs, "
        r"PostgreSQL [\d.]+ µs per event \([\d.]+× the upsert's CPU\)",
        r"single-event\s+[\d,]+ events/s\s+at 8 concurrent clients; latency p50 [\d.]+ ms, p99",
        r"summary read\s+p50 [\d.]+ ms, p99 [\d.]+ ms with 1,100 events in the period "
        r"\(20 reads; CPU per read server \d+ µs",
        r"history preload\s+[\d,]+ events/s COPY \(3,000 events in 3 ended monthly periods",
        r"summary read\s+p50 [\d.]+ ms, p99 [\d.]+ ms for \d{4}-\d\d \(a past month, 1,000 "
        r"events, counted exactly\), 4,100 events in the merchant's history",
        r"disk used\s+[\d.]+ GB database",
        r"2 server processes",
        r"server RSS\s+[\d,]+ MB",
        r"counted once\s+1,100 of 1,100 events sent",
    ):
        assert re.search(figure, printed), (figure, printed)
    # The machine's load before and after the run (the machines are shared).
    assert re.search(MACHINE_LINE, printed), printed


def test_a_history_the_disk_cannot_hold_is_refused_before_anything_starts() -> None:
    finished = subprocess.run(
        [BILLING, "bench", "usage", "--history", str(10**12)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert "would leave less than" in finished.stderr
    assert "measuring" not in finished.stderr
