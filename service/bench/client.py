"""What a load generator measures with: its own keep-alive HTTP/1.1 connection (a
general-purpose client such as httpx spends more CPU per request than the server does, and on a
small machine that would be measured as server slowness), percentiles, and the CPU the server,
PostgreSQL and the load generator itself spent, read from ``/proc``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


class Connection:
    """One keep-alive HTTP/1.1 connection: send a prepared request, read the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, is_chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                is_chunked = True
        if not is_chunked:
            return status, await self.reader.readexactly(length)
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]

    def close(self) -> None:
        self.writer.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


class Cpu:
    """CPU seconds used so far by the server (none: 0), PostgreSQL (postmaster and its
    backends) and this process (the load generator): per-event CPU is a figure a busy machine
    distorts far less than a rate."""

    def __init__(self, server_pid: int | None, postmaster_pids: tuple[int, ...]) -> None:
        self.server_pid = server_pid
        self.postmaster_pids = set(postmaster_pids)
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str]:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # a backend that just exited: its time moves to the postmaster
            return []
        return text.rsplit(")", 1)[1].split()

    def sample(self) -> tuple[float, float, float]:
        server = self._stat(self.server_pid) if self.server_pid is not None else []
        postgres = 0
        for postmaster_pid in self.postmaster_pids:
            postmaster = self._stat(postmaster_pid)
            postgres += sum(int(value) for value in postmaster[11:15]) if postmaster else 0
        # The server's own time and its worker processes' (``serve --workers N``).
        served = sum(int(value) for value in server[11:15]) if server else 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = self._stat(int(entry.name))
                if fields and int(fields[1]) in self.postmaster_pids:
                    postgres += int(fields[11]) + int(fields[12])
                elif self.server_pid is not None and fields and int(fields[1]) == self.server_pid:
                    served += int(fields[11]) + int(fields[12])
        return (
            served / self.ticks,
            postgres / self.ticks,
            time.process_time(),
        )

    def per_event(self, before: tuple[float, float, float], events: int) -> dict[str, float]:
        after = self.sample()
        names = ("server", "postgres", "load")
        return {
            name: (end - start) / events * 1e6
            for name, start, end in zip(names, before, after, strict=True)
        }


def cpu_text(cpu: dict[str, float]) -> str:
    return (
        f"server {cpu['server']:.0f} µs, PostgreSQL {cpu['postgres']:.0f} µs, "
        f"load generator {cpu['load']:.0f} µs"
    )
