"""Concurrent callers with the same key share one statement and its commit.

The way PostgreSQL groups concurrent commits: a caller whose key has no statement in flight
starts one at once (nothing waits for a timer); callers that arrive meanwhile queue and go
together in the next one, up to ``max_batch`` items a statement. Each caller gets its own item's
answer, only after the statement holding it has finished. The single-event usage path (by
merchant) and the Stripe webhook inbox (one key) both write this way.

Every caller gets an answer or an exception, whatever happens to the statement: a failure is
every waiting caller's failure, and a flush cancelled mid-statement (the process stopping)
answers everyone still waiting with `FlushInterrupted` instead of leaving them hanging. State
lives only while a key has work in flight: a key, or an event loop, with nothing pending leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial
from typing import Generic, TypeVar

from service.errors import Unavailable

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class FlushInterrupted(Unavailable):
    """The shared statement holding this caller's item was cancelled before it finished."""

    def __init__(self) -> None:
        super().__init__(
            "the write this request was part of was interrupted (the service is stopping); "
            "send the request again: repeating it is safe"
        )


class _Pending(Generic[T, R]):
    """What waits for one key on one event loop, and the task writing it."""

    __slots__ = ("answers", "items", "task")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.answers: list[asyncio.Future[R]] = []
        self.task: asyncio.Task[None] | None = None


class Coalescer(Generic[K, T, R]):
    """``await coalescer.submit(key, item)``: ``flush(key, items)`` runs once for every item
    waiting under ``key`` and returns one result per item, in order."""

    def __init__(
        self, flush: Callable[[K, list[T]], Awaitable[Sequence[R]]], *, max_batch: int
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._loops: dict[asyncio.AbstractEventLoop, dict[K, _Pending[T, R]]] = {}

    async def submit(self, key: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        by_key = self._loops.get(loop)
        if by_key is None:
            by_key = self._loops[loop] = {}
        pending = by_key.get(key)
        if pending is None:
            pending = by_key[key] = _Pending()
            task = pending.task = loop.create_task(self._drain(loop, by_key, key, pending))
            task.add_done_callback(partial(self._finished, loop, by_key, key, pending))
        answer: asyncio.Future[R] = loop.create_future()
        pending.items.append(item)
        pending.answers.append(answer)
        return await answer

    def flush_task(self, key: K) -> asyncio.Task[None] | None:
        """The task writing ``key``'s items on this event loop, if one is in flight."""
        pending = self._loops.get(asyncio.get_running_loop(), {}).get(key)
        return pending.task if pending is not None else None

    def queued(self, key: K) -> int:
        """Items of ``key`` on this event loop waiting for the next statement."""
        pending = self._loops.get(asyncio.get_running_loop(), {}).get(key)
        return len(pending.items) if pending is not None else 0

    @property
    def keys_in_flight(self) -> int:
        """Keys with work in flight, over every event loop."""
        return sum(len(by_key) for by_key in self._loops.values())

    @property
    def event_loops(self) -> int:
        """Event loops with work in flight (a loop with none is forgotten)."""
        return len(self._loops)

    async def _drain(
        self,
        loop: asyncio.AbstractEventLoop,
        by_key: dict[K, _Pending[T, R]],
        key: K,
        pending: _Pending[T, R],
    ) -> None:
        answers: list[asyncio.Future[R]] = []
        try:
            while pending.items:
                if len(pending.items) <= self._max_batch:
                    items, answers = pending.items, pending.answers
                    pending.items, pending.answers = [], []
                else:
                    items = pending.items[: self._max_batch]
                    answers = pending.answers[: self._max_batch]
                    del pending.items[: self._max_batch], pending.answers[: self._max_batch]
                try:
                    results = await self._flush(key, items)
                except Exception as error:  # every caller of the statement gets the error
                    _fail(answers, error)
                    continue
                for answer, result in zip(answers, results, strict=True):
                    if not answer.done():  # its caller may have gone away
                        answer.set_result(result)
        except BaseException as error:  # cancelled mid-statement: nobody may wait forever
            interrupted = error if isinstance(error, Exception) else FlushInterrupted()
            _fail(answers, interrupted)
            _fail(pending.answers, interrupted)
            raise
        finally:
            # No await since ``pending.items`` was last found empty: nothing queued meanwhile.
            self._forget(loop, by_key, key, pending)

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        by_key: dict[K, _Pending[T, R]],
        key: K,
        pending: _Pending[T, R],
        task: asyncio.Task[None],
    ) -> None:
        """A task cancelled before it ever ran skips its own ``finally``: answer its callers."""
        self._forget(loop, by_key, key, pending)
        _fail(pending.answers, FlushInterrupted())

    def _forget(
        self,
        loop: asyncio.AbstractEventLoop,
        by_key: dict[K, _Pending[T, R]],
        key: K,
        pending: _Pending[T, R],
    ) -> None:
        if by_key.get(key) is pending:
            del by_key[key]
            if not by_key and self._loops.get(loop) is by_key:
                del self._loops[loop]


def _fail(answers: list[asyncio.Future[R]], error: BaseException) -> None:
    for answer in answers:
        if not answer.done():
            answer.set_exception(error)
