"""The subscription state machine: which transitions are allowed.

``trialing → active → past_due → suspended``, ``active → paused → active``, ``* → canceled``;
a past-due or suspended subscription returns to active when it is paid.
"""

from __future__ import annotations

from enum import StrEnum

from service.errors import InvalidTransition


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    SUSPENDED = "suspended"
    PAUSED = "paused"
    CANCELED = "canceled"


ALLOWED: frozenset[tuple[Status, Status]] = frozenset(
    {
        (Status.TRIALING, Status.ACTIVE),
        (Status.ACTIVE, Status.PAST_DUE),
        (Status.PAST_DUE, Status.ACTIVE),
        (Status.PAST_DUE, Status.SUSPENDED),
        (Status.SUSPENDED, Status.ACTIVE),
        (Status.ACTIVE, Status.PAUSED),
        (Status.PAUSED, Status.ACTIVE),
        *((status, Status.CANCELED) for status in Status if status is not Status.CANCELED),
    }
)

CHANGEABLE: frozenset[Status] = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE})
"""States in which the plan, add-ons or cancellation schedule may change."""


def check_transition(current: str, target: Status) -> None:
    if (Status(current), target) not in ALLOWED:
        raise InvalidTransition(
            f"a {current} subscription cannot become {target.value}",
            current_status=current,
            requested_status=target.value,
        )


def check_changeable(current: str, action: str) -> None:
    if Status(current) not in CHANGEABLE:
        raise InvalidTransition(f"cannot {action} a {current} subscription", current_status=current)
