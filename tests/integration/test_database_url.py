"""``DATABASE_URL`` reaches asyncpg as written: socket host, password, port and every query
parameter (``sslmode``, ``application_name``, ...) included."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest

from service.db import engine as db_engine
from service.db.engine import Database


def _socket_url(database: Database, *, port: int, application_name: str) -> str:
    """The session's database as a socket URL with a password, a port and query parameters."""
    parts = urlsplit(database.dsn)
    if "host" not in parse_qs(parts.query):
        pytest.skip("the session database is not reached through a Unix socket")
    netloc = "postgres:s3cr%40t@"  # a password with an escaped character
    query = f"{parts.query}&port={port}&sslmode=disable&application_name={application_name}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


async def test_every_part_of_the_url_reaches_the_driver(database: Database) -> None:
    url = _socket_url(database, port=5432, application_name="kefu-url-check")
    previous = db_engine.current()
    try:
        connected = db_engine.connect(url)
    finally:
        db_engine.rebind(previous)
    # What `billing migrate` connects with; the pool gets the same config.
    connection = await asyncpg.connect(**connected.engine.config)
    try:
        name = await connection.fetchval("SELECT current_setting('application_name')")
        ssl = await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await connection.close()
    assert name == "kefu-url-check"
    assert ssl is False
    assert connected.engine.config == {"dsn": url}


async def test_the_port_of_a_socket_url_is_honoured(database: Database) -> None:
    """The socket file is named after the port: another port is another server (none here)."""
    url = _socket_url(database, port=5999, application_name="kefu-wrong-port")
    previous = db_engine.current()
    try:
        connected = db_engine.connect(url)
    finally:
        db_engine.rebind(previous)
    with pytest.raises(FileNotFoundError):  # no socket file .s.PGSQL.5999
        await asyncpg.connect(**connected.engine.config)
