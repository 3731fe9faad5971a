"""The body's deadline (``service.edge._BodyDeadline``): a message the server already holds
comes back without a timer; one it waits for comes back if it arrives in time, and the wait is
cancelled (the receive sees the cancellation) when it does not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.edge import _BodyDeadline
from service.errors import RequestTimeout

BODY = {"type": "http.request", "body": b"{}", "more_body": False}


async def test_a_message_already_there_is_returned_without_arming_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def receive() -> dict[str, Any]:
        return BODY

    def no_timer(_: float) -> Any:
        raise AssertionError("a timer was armed for a message that needed no wait")

    monkeypatch.setattr(asyncio, "timeout", no_timer)
    deadline = _BodyDeadline(receive, 0.05)
    assert await deadline() == BODY
    assert deadline.is_body_complete


async def test_a_message_that_arrives_in_time_after_waiting_is_returned() -> None:
    arrived = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await arrived.wait()
        await asyncio.sleep(0)  # a second wait inside the same receive
        return BODY

    asyncio.get_running_loop().call_later(0.01, arrived.set)
    assert await _BodyDeadline(receive, 5)() == BODY


async def test_chunks_that_stop_coming_are_a_request_timeout_and_the_wait_is_cancelled() -> None:
    chunks = [{"type": "http.request", "body": b"{", "more_body": True}]
    cancelled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        try:
            await asyncio.Event().wait()  # the rest never comes
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    deadline = _BodyDeadline(receive, 0.05)
    assert (await deadline())["more_body"] is True
    with pytest.raises(RequestTimeout):
        await deadline()
    assert cancelled.is_set()


async def test_a_cancelled_request_cancels_the_receive_it_waits_on() -> None:
    cancelled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    waiting = asyncio.create_task(_BodyDeadline(receive, 60)())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cancelled.is_set()
