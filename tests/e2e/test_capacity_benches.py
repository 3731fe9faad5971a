"""``billing bench neighbours`` and ``billing bench overload`` run end to end and print their
figures (tiny runs: they measure nothing worth keeping). Structural, never timed: the flooding
merchant is refused with 429s and its quiet neighbour never; no client of the overloaded server
times out, and no more requests are in flight than the cap."""

from __future__ import annotations

import re
import subprocess

from tests.e2e.conftest import BILLING


def _bench(*args: str) -> str:
    finished = subprocess.run(
        [BILLING, "bench", *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def _counts(printed: str, phase: str, who: str) -> tuple[int, int]:
    section = printed.split(phase, 1)[1]
    found = re.search(rf"{who}\s+[\d,]+/s sent:\s+([\d,]+) stored,\s+([\d,]+) 429s", section)
    assert found, (who, printed)
    return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))


def test_the_flooding_merchant_gets_429s_and_its_quiet_neighbour_none() -> None:
    # 10 a second over a 10 s window: a burst of 100, then 10 a second; the flood sends 50 a
    # second for 4 s (200), so about 60 are refused whatever the machine's speed.
    printed = _bench(
        "neighbours", "--seconds", "4", "--limit", "10", "--quiet-rate", "2", "--connections", "4"
    )
    assert _counts(printed, "without the flood", "quiet")[1] == 0
    assert _counts(printed, "without the flood", "flooder")[1] == 0
    quiet_stored, quiet_refused = _counts(printed, "with the flood", "quiet")
    flood_stored, flood_refused = _counts(printed, "with the flood", "flooder")
    assert quiet_refused == 0
    assert quiet_stored > 0
    assert flood_refused > 0
    assert flood_stored > 0
    assert re.search(r"quiet merchant's p99 with the flood / without: [\d.]+", printed)
    assert "429s to the quiet merchant: 0" in printed


def test_the_overload_benchmark_prints_its_figures_and_no_client_times_out() -> None:
    printed = _bench(
        "overload", "--clients", "24", "--seconds", "2", "--max-in-flight", "2", "--no-uncapped"
    )
    assert re.search(r"stored\s+[\d,]+ events/s \([\d,]+\); p50 \d+ ms, p99 \d+ ms", printed)
    assert re.search(r"refused \(503\)\s+[\d,]+ /s", printed)
    assert re.search(r"client timeouts\s+0 \(at 30 s\); connection errors 0", printed)
    peak = re.search(r"in flight at most\s+(\d+)", printed)
    assert peak, printed
    assert 1 <= int(peak.group(1)) <= 2
    assert re.search(r"server RSS \d+ MB \(peak \d+ MB\); counted once: [\d,]+", printed)
