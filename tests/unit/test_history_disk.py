"""``billing bench usage --history N`` refuses, before anything starts, a history that would
leave less than 10 GB free (400 bytes an event, WAL included)."""

from __future__ import annotations

from service.bench.history import history_disk_refusal

GB = 1000**3


def test_a_hundred_million_events_fit_when_their_forty_gb_leave_ten_gb_free() -> None:
    assert history_disk_refusal(100_000_000, free=61 * GB) is None
    assert history_disk_refusal(100_000_000, free=49 * GB) is not None


def test_a_history_that_would_leave_less_than_ten_gb_free_is_refused_with_what_fits() -> None:
    refusal = history_disk_refusal(60_000_000, free=30 * GB)
    assert refusal is not None
    assert "needs about 24.0 GB" in refusal
    assert "would leave less than 10.0 GB free" in refusal
    assert "at most 50,000,000 events" in refusal
