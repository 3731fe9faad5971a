"""Which failures mean "the database is out of reach for now" (a 503 and a retry, a worker backing
off) and which are bugs (a 500, logged with the traceback); and the worker's backoff."""

from __future__ import annotations

import asyncpg
import pytest

from service.command import retry_while_unreachable
from service.db.engine import is_unavailable
from service.errors import DatabaseUnavailable
from service.settings import Settings
from service.worker import Backoff


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnavailable("no connection came free", retry_after=2),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.ConnectionFailureError("connection failure"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another server"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2)"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_lost_or_refused_connection_means_unavailable(error: BaseException) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        # A raw OSError is not the database's (a file, Stripe): the pool wraps its own.
        ConnectionRefusedError(111, "Connection refused"),
        FileNotFoundError(2, "No such file or directory"),
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("a bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_anything_else_is_not_called_unavailable(error: BaseException) -> None:
    assert not is_unavailable(error)


def test_a_worker_waits_longer_after_each_failed_pass_up_to_the_ceiling() -> None:
    backoff = Backoff(interval_seconds=0.5, ceiling_seconds=3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.failed() == 0.5
    # A ceiling below the interval never makes it wait less than its interval.
    assert Backoff(interval_seconds=5.0, ceiling_seconds=1.0).failed() == 5.0


async def test_a_start_up_step_cut_off_by_a_database_restart_runs_again_until_it_is_done() -> None:
    # `billing serve` starting while PostgreSQL restarts (found by the gauntlet: it exited 1).
    settings = Settings.from_env({"BILLING_DB_WAIT_SECONDS": "30"})
    attempts: list[int] = []

    async def step() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        if len(attempts) == 2:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        return "done"

    assert await retry_while_unreachable(settings, step) == "done"
    assert len(attempts) == 3


async def test_a_start_up_step_failing_for_another_reason_is_not_run_again() -> None:
    settings = Settings.from_env({"BILLING_DB_WAIT_SECONDS": "30"})
    attempts: list[int] = []

    async def step() -> str:
        attempts.append(len(attempts))
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await retry_while_unreachable(settings, step)
    assert len(attempts) == 1
