"""Debian's PostgreSQL programs run from the test tooling (the local Citus cluster, the
external-PostgreSQL deployment tests): PostgreSQL and PgBouncer refuse to run as root, so as
root they run as the ``postgres`` user, in folders it owns."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def as_server_user(command: list[str]) -> list[str]:
    """``command`` as the ``postgres`` user when we are root, else as it is."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def own(path: Path) -> None:
    """``path`` handed to the ``postgres`` user when we are root (it must read or write it)."""
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def stop_server(bin_dir: Path, data_dir: Path) -> None:
    """``pg_ctl stop -m fast`` of the server in ``data_dir``, waiting for it (a server already
    stopped is no error)."""
    subprocess.run(
        as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        timeout=60,
        check=False,
    )
