"""The shared-statement coalescer on its own (a plain flush function, no database): batches,
failures, cancellation before the flush ever ran, and a registry that keeps nothing once the
work is done, on any number of event loops."""

from __future__ import annotations

import asyncio

import pytest

from service.db.coalescing import Coalescer, FlushInterrupted


class Recorder:
    """A flush that doubles each item and remembers the batches it was given."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail_first = fail_first
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, key: str, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_first and len(self.batches) == 1:
            raise ValueError("the statement failed")
        return [item * 2 for item in items]


async def test_callers_arriving_during_a_flush_share_the_next_one_up_to_the_batch_size() -> None:
    flush = Recorder()
    flush.gate.clear()
    coalescer: Coalescer[str, int, int] = Coalescer(flush, max_batch=3)
    first = asyncio.create_task(coalescer.submit("m", 1))
    await asyncio.sleep(0)  # the first flush starts with the first item alone
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit("m", n)) for n in range(2, 7)]
    await asyncio.sleep(0)
    assert (coalescer.queued("m"), coalescer.queued("other")) == (5, 0)  # behind the first
    flush.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8, 10, 12]
    assert flush.batches == [[1], [2, 3, 4], [5, 6]]
    assert coalescer.keys_in_flight == 0


async def test_a_failed_statement_fails_its_callers_only() -> None:
    flush = Recorder(fail_first=True)
    flush.gate.clear()
    coalescer: Coalescer[str, int, int] = Coalescer(flush, max_batch=10)
    first = asyncio.create_task(coalescer.submit("m", 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.submit("m", 2))
    await asyncio.sleep(0)
    flush.gate.set()
    with pytest.raises(ValueError, match="the statement failed"):
        await first
    assert await second == 4


async def test_a_flush_cancelled_before_it_ever_ran_still_answers_its_callers() -> None:
    coalescer: Coalescer[str, int, int] = Coalescer(Recorder(), max_batch=10)
    caller = asyncio.create_task(coalescer.submit("m", 1))
    await asyncio.sleep(0)  # the caller queued its item and created the flush task ...
    flush = coalescer.flush_task("m")
    assert flush is not None
    flush.cancel()  # ... which is cancelled before its first step
    with pytest.raises(FlushInterrupted):
        await asyncio.wait_for(caller, timeout=10)
    assert coalescer.keys_in_flight == 0
    assert await coalescer.submit("m", 5) == 10


async def test_nothing_is_kept_once_the_work_is_done_on_many_keys_and_event_loops() -> None:
    coalescer: Coalescer[str, int, int] = Coalescer(Recorder(), max_batch=10)

    async def burst() -> list[int]:
        return await asyncio.gather(
            *(coalescer.submit(f"merchant-{n % 50}", n) for n in range(200))
        )

    for _ in range(5):  # five event loops come and go, as in a test run or a restarted worker
        answers = await asyncio.to_thread(asyncio.run, burst())
        assert answers == [n * 2 for n in range(200)]
    assert await burst() == [n * 2 for n in range(200)]
    assert coalescer.keys_in_flight == 0
    assert coalescer.event_loops == 0
