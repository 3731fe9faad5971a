"""A small Chrome DevTools Protocol driver for Debian's Chromium: headless, no downloads.

Starts ``chromium`` with a throwaway profile and a debugging port, opens one page and sends
commands over the protocol's websocket (``websockets`` comes with uvicorn[standard]).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,1000",
)  # fmt: skip


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, socket: Any, session_id: str) -> None:
        self.socket = socket
        self.session_id = session_id
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send(json.dumps(
            {"id": message_id, "method": method, "params": params, "sessionId": self.session_id}
        ))  # fmt: skip
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, event: str, seconds: float = 30) -> dict[str, Any]:
        for index, message in enumerate(self.events):
            if message.get("method") == event:
                return self.events.pop(index)
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await self.socket.recv())
                if message.get("method") == event:
                    return message
                self.events.append(message)

    async def goto(self, url: str) -> None:
        self.events.clear()
        await self.send("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)  # fmt: skip
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    binary = chromium_path()
    assert binary, "chromium is not installed (make test installs it)"
    profile = Path(tempfile.mkdtemp(prefix="kefu-chromium-"))
    process = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not _port_written(port_file):  # noqa: ASYNC110 - polling a file chromium writes
                await asyncio.sleep(0.05)
        port, browser_path = port_file.read_text().splitlines()[:2]
        async with connect(f"ws://127.0.0.1:{port}{browser_path}", max_size=64 << 20) as socket:
            await socket.send(json.dumps(
                {"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}
            ))  # fmt: skip
            target = await _reply(socket, 1)
            await socket.send(json.dumps({"id": 2, "method": "Target.attachToTarget", "params": {
                "targetId": target["targetId"], "flatten": True}}))  # fmt: skip
            session = await _reply(socket, 2)
            page = Page(socket, session["sessionId"])
            await page.send("Page.enable")
            await page.send("Network.enable")
            await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                            deviceScaleFactor=1, mobile=False)  # fmt: skip
            yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _port_written(port_file: Path) -> bool:
    return port_file.exists() and len(port_file.read_text().splitlines()) >= 2


async def _reply(socket: Any, message_id: int) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 30))
        if message.get("id") == message_id:
            return message["result"]
