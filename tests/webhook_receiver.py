"""A webhook endpoint on loopback for the Stripe stand-in to post to: it records what it gets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records each webhook it accepts; answers ``status`` after ``delay_seconds``."""

    url: str = ""
    status: int = 200
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"got {len(self.received)} webhooks, wanted {count}")
                self.cond.wait(remaining)
            return list(self.received)

    def take(self) -> list[Received]:
        """What arrived since the last call, oldest first."""
        with self.cond:
            taken, self.received = self.received, []
        return taken

    def event_ids(self) -> list[str]:
        with self.cond:
            return [r.event["id"] for r in self.received]


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A `Receiver` listening on loopback for as long as the block runs."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay_seconds)
            if state.status == 200:
                with state.cond:
                    state.received.append(Received(dict(self.headers), body))
                    state.cond.notify_all()
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
