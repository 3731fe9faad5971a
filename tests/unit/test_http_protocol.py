"""The HTTP protocol that sends a response in one socket write: the writes of one event-loop
turn go out together, close sends what waits, abort drops it; and uvicorn serves through it
(answers on a kept-alive connection, a streamed body part by part)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from service.http_protocol import OneWriteHttpToolsProtocol, OneWritePerTurn


class Transport:
    """Remembers every write and whether it was closed or aborted."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_the_writes_of_one_turn_leave_in_one_write_at_its_end() -> None:
    transport = Transport()
    joined = OneWritePerTurn(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"HTTP/1.1 201 Created\r\n\r\n")
    joined.write(b"")
    joined.write(b'{"status":"accepted"}')
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"status":"accepted"}']
    joined.write(b"next")
    await asyncio.sleep(0)
    assert transport.writes[1:] == [b"next"]
    assert joined.get_extra_info("peername") == "info:peername"


async def test_close_sends_what_waits_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    closing, aborting = Transport(), Transport()
    first = OneWritePerTurn(closing, loop)  # type: ignore[arg-type]
    first.write(b"last words")
    first.close()
    assert closing.writes == [b"last words"]
    assert closing.closed
    second = OneWritePerTurn(aborting, loop)  # type: ignore[arg-type]
    second.write(b"never sent")
    second.abort()
    await asyncio.sleep(0)
    assert aborting.writes == []
    assert aborting.aborted


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = scope["path"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=free, http=OneWriteHttpToolsProtocol, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # up to 10 s for the server to listen
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield free
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if b"chunked" in head:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readexactly(2)
        return head, body
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


async def test_uvicorn_answers_through_it_on_a_kept_alive_connection_and_streams(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in (b"/first", b"/second"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n\r\n")
            head, body = await _answer(reader)
            assert head.startswith(b"HTTP/1.1 201 Created\r\n")
            assert body == path
        writer.write(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        head, body = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b"one,two"
    finally:
        writer.close()
