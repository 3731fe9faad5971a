"""Running a benchmark's load generator in a process of its own, so its CPU is not counted as
the server's, and bringing its figures (or its error) back."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any


def in_another_process(entry: Callable[[dict[str, Any], Any], None], plan: Any) -> dict[str, Any]:
    """Start ``entry(plan_fields, sending)`` in a fresh (spawned) process; return what it sends."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=entry, args=(asdict(plan), sending), daemon=True)
    process.start()
    sending.close()
    try:
        result: dict[str, Any] = receiving.recv()
    except EOFError:
        raise RuntimeError("the load generator died without a result") from None
    finally:
        process.join(timeout=30)
    if "error" in result:
        raise RuntimeError(f"load generator failed: {result['error']}")
    return result


def report(drive: Callable[[], Awaitable[dict[str, Any]]], sending: Any) -> None:
    """In the load generator: run ``drive`` on uvloop and send its figures (or its error)."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.run
    try:
        sending.send(runner(drive()))
    except Exception as error:  # reported to the parent, which raises it
        sending.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        sending.close()
