"""The pure rules of the revenue figures: replaying a subscription's history, classifying moves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.finance.revenue import classify, replay


def _at(day: int) -> datetime:
    return datetime(2026, 3, day, tzinfo=UTC)


def test_replay_follows_status_and_plan_changes() -> None:
    events = [
        {"kind": "created", "to_status": "trialing", "at": _at(1),
         "details": {"plan": "basic v1", "addons": ["fast_response"]}},
        {"kind": "period_started", "to_status": None, "at": _at(2), "details": {}},
        {"kind": "status_changed", "to_status": "active", "at": _at(15), "details": {}},
        {"kind": "plan_changed", "to_status": None, "at": _at(20),
         "details": '{"from": "basic v1", "to": "advanced v2", "addons": []}'},
    ]  # fmt: skip
    states = replay(events)
    assert [(s.at.day, s.status, s.plan_code, s.plan_version, s.addons) for s in states] == [
        (1, "trialing", "basic", 1, ("fast_response",)),
        (15, "active", "basic", 1, ("fast_response",)),
        (20, "active", "advanced", 2, ()),
    ]


@pytest.mark.parametrize(
    ("before", "after", "had", "kind"),
    [
        (0, 9900, False, "new"),
        (0, 9900, True, "reactivation"),
        (9900, 0, True, "churn"),
        (9900, 30000, True, "expansion"),
        (13860, 9900, True, "contraction"),
        (9900, 9900, True, None),
        (0, 0, True, None),
    ],
)
def test_classify(before: int, after: int, had: bool, kind: str | None) -> None:
    assert classify(before, after, had_mrr_before=had) == kind
