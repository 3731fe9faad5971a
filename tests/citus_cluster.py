"""A local Citus cluster for the suite (``make test-citus``), and Citus databases for tests.

``python -m tests.citus_cluster -- COMMAND...`` starts a coordinator and two workers from the
installed Citus (PostgreSQL's ``citus.so``; Citus' own packages or images install it, nothing
here builds it) in temporary folders on loopback ports, runs COMMAND with ``TEST_DATABASE_URL``
pointing at the coordinator (and ``BILLING_CITUS_SHARD_COUNT`` small), then stops and removes
the cluster. ``--or-skip`` turns "Citus is not installed" into a message and success, which is
how ``make test`` runs it.

`prepare_database` is what the suite calls before it uses a database on ``TEST_DATABASE_URL``'s
server: on a Citus coordinator (its ``postgres`` database has the extension and the workers,
as this module sets it up) a new database is made on every node, with the extension, and the
workers registered in it, so ``billing migrate`` distributes the tables there; on plain
PostgreSQL it only creates the database. As root the servers run as the ``postgres`` system
user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.postgres_processes import as_server_user, own, stop_server

SHARD_COUNT = 4
"""Shards per distributed table in the suite: few, so creating ~40 tables stays quick."""
WORKERS = 2
SUITE_ON_CITUS = "KEFU_TEST_ON_CITUS"
"""Set (to 1) in the environment of the command `main` runs: tests that size themselves by time
(the preview property's example count) read it."""


def installed_citus() -> tuple[Path | None, str]:
    """The ``bin`` folder of a PostgreSQL that has Citus installed, or None and why not."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/lib/citus.so"),
        key=lambda path: int(path.parents[1].name) if path.parents[1].name.isdigit() else 0,
    )
    for library in reversed(candidates):
        bin_dir = library.parents[1] / "bin"
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir, ""
    if candidates:
        return None, f"{candidates[-1]} is there but its PostgreSQL's initdb/pg_ctl are not"
    return None, (
        "Citus is not installed (no /usr/lib/postgresql/*/lib/citus.so): install it from Citus'"
        " packages (https://docs.citusdata.com/en/stable/installation/) to run the suite on a"
        " cluster"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A throw-away cluster: durability off. Connections: every coordinator backend may open a few
# to each worker; the suite runs API processes, workers and a pool of 30 side by side.
# Every Citus database runs a maintenance process on every node: the suite makes dozens.
_SETTINGS = (
    "shared_preload_libraries=citus",
    "listen_addresses=127.0.0.1",
    "max_connections=600",
    "max_prepared_transactions=300",
    "max_worker_processes=160",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "citus.shard_replication_factor=1",
)


@dataclass
class Node:
    bin: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        options = " ".join(f"-c {setting}" for setting in (*_SETTINGS, f"port={self.port}"))
        options += f" -c unix_socket_directories={self.root}"
        started = subprocess.run(
            as_server_user([
                str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l",
                str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start",
            ]),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )  # fmt: skip
        if started.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(
                f"PostgreSQL with Citus did not start on port {self.port}: {started.stderr}\n"
                + (log.read_text() if log.exists() else "")
            )

    def stop(self) -> None:
        stop_server(self.bin, self.data_dir)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _init_node(bin_dir: Path, root: Path) -> Node:
    root.mkdir()
    own(root)
    subprocess.run(
        as_server_user([
            str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
        ]),
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    return Node(bin=bin_dir, root=root, port=_free_port())


@dataclass
class LocalCluster:
    """A coordinator and its workers, each its own server in ``root``, trust auth on 127.0.0.1."""

    root: Path
    coordinator: Node
    workers: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The coordinator's ``postgres`` database: what ``TEST_DATABASE_URL`` names."""
        return self.coordinator.url()

    def stop(self) -> None:
        for node in (self.coordinator, *self.workers):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def _set_up(cluster: LocalCluster) -> None:
    for worker in cluster.workers:
        connection = await asyncpg.connect(worker.url())
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS citus")
        finally:
            await connection.close()
    await _register(cluster.coordinator.url(), cluster.coordinator.port, cluster.workers)


async def _register(coordinator_url: str, coordinator_port: int, workers: list[Node]) -> None:
    connection = await asyncpg.connect(coordinator_url)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS citus")
        await connection.execute(
            "SELECT citus_set_coordinator_host('127.0.0.1', $1)", coordinator_port
        )
        for worker in workers:
            await connection.execute("SELECT citus_add_node('127.0.0.1', $1)", worker.port)
    finally:
        await connection.close()


def start(workers: int = WORKERS) -> LocalCluster:
    """A coordinator and ``workers`` workers from the installed Citus, ready for databases."""
    import asyncio

    bin_dir, why_not = installed_citus()
    if bin_dir is None:
        raise RuntimeError(why_not)
    root = Path(tempfile.mkdtemp(prefix="kefu-billing-citus-"))
    root.chmod(0o755)
    own(root)
    nodes = [_init_node(bin_dir, root / name) for name in ["coordinator"] + [
        f"worker{number}" for number in range(1, workers + 1)
    ]]  # fmt: skip
    cluster = LocalCluster(root=root, coordinator=nodes[0], workers=nodes[1:])
    try:
        for node in nodes:
            node.start()
        asyncio.run(_set_up(cluster))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def add_worker(cluster: LocalCluster) -> Node:
    """One more node in ``cluster``'s folder, started (not yet added to any database)."""
    bin_dir = cluster.coordinator.bin
    node = _init_node(bin_dir, cluster.root / f"worker{len(cluster.workers) + 1}")
    node.start()
    cluster.workers.append(node)
    return node


# -- databases on TEST_DATABASE_URL's server ---------------------------------------------


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Topology:
    """Where a Citus coordinator's workers are (read from its ``postgres`` database)."""

    coordinator: tuple[str, int]
    workers: tuple[tuple[str, int], ...]


async def topology(dsn: str) -> Topology | None:
    """The Citus cluster behind ``dsn``'s server, or None for plain PostgreSQL."""
    admin = await asyncpg.connect(_with_database(dsn, "postgres"))
    try:
        has_citus = await admin.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
        if not has_citus:
            return None
        rows = await admin.fetch(
            "SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary'"
            " ORDER BY groupid"
        )
    finally:
        await admin.close()
    coordinator = next(((r["nodename"], r["nodeport"]) for r in rows if r["groupid"] == 0), None)
    workers = tuple((r["nodename"], r["nodeport"]) for r in rows if r["groupid"] != 0)
    if coordinator is None or not workers:
        return None
    return Topology(coordinator=coordinator, workers=workers)


def _node_dsn(dsn: str, node: tuple[str, int], database: str) -> str:
    """``dsn`` (its user and password) pointed at another node of the cluster."""
    parts = urlsplit(dsn)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{node[0]}:{node[1]}" if credentials else f"{node[0]}:{node[1]}"
    return urlunsplit((parts.scheme, netloc, "/" + database, "", ""))


async def _create_if_missing(admin_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f"CREATE DATABASE {_quoted(database)}")
    finally:
        await admin.close()


async def prepare_database(dsn: str) -> bool:
    """Create ``dsn``'s database if missing; on a Citus coordinator make it a Citus database
    (on every node, the extension, the workers registered). Whether it is one."""
    database = urlsplit(dsn).path.lstrip("/")
    cluster = await topology(dsn)
    await _create_if_missing(_with_database(dsn, "postgres"), database)
    if cluster is None:
        return False
    for worker in cluster.workers:
        await _create_if_missing(_node_dsn(dsn, worker, "postgres"), database)
        connection = await asyncpg.connect(_node_dsn(dsn, worker, database))
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS citus")
        finally:
            await connection.close()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS citus")
        registered = {
            (row["nodename"], row["nodeport"])
            for row in await connection.fetch("SELECT nodename, nodeport FROM pg_dist_node")
        }
        if cluster.coordinator not in registered:
            await connection.execute(
                "SELECT citus_set_coordinator_host($1, $2)", *cluster.coordinator
            )
        for worker in cluster.workers:
            if worker not in registered:
                await connection.execute("SELECT citus_add_node($1, $2)", *worker)
    finally:
        await connection.close()
    return True


async def drop_database(dsn: str) -> None:
    """Drop ``dsn``'s database (sessions cut), on the workers too when it is a Citus one."""
    database = urlsplit(dsn).path.lstrip("/")
    cluster = await topology(dsn)
    nodes = [None] if cluster is None else [None, *cluster.workers]
    for node in nodes:
        admin_dsn = (
            _with_database(dsn, "postgres") if node is None else _node_dsn(dsn, node, "postgres")
        )
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")
        finally:
            await admin.close()


_SHARD_SUFFIX = re.compile(r"_\d{6,}$")


def unsharded(name: str) -> str:
    """A table (or partition) name as the schema knows it: on Citus ``tableoid::regclass``
    read through the coordinator names the shard (``audit_log_2026_12_102023``)."""
    return _SHARD_SUFFIX.sub("", name)


# -- make test-citus ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.citus_cluster",
        description="Run a command against a local Citus cluster (coordinator + 2 workers).",
    )
    parser.add_argument(
        "--or-skip",
        action="store_true",
        help="where Citus is not installed, say so and succeed (what `make test` does)",
    )
    parser.add_argument(
        "--shard-count",
        type=int,
        default=SHARD_COUNT,
        help=f"shards per distributed table (BILLING_CITUS_SHARD_COUNT; default {SHARD_COUNT})",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    bin_dir, why_not = installed_citus()
    if bin_dir is None:
        print(f"SKIPPED the Citus suite: {why_not}", flush=True)
        return 0 if args.or_skip else 2
    started_at = time.monotonic()
    cluster = start()
    print(
        f"Citus cluster up in {time.monotonic() - started_at:.1f} s: coordinator"
        f" 127.0.0.1:{cluster.coordinator.port}, workers "
        + ", ".join(f"127.0.0.1:{worker.port}" for worker in cluster.workers)
        + f" ({bin_dir.parent}, {args.shard_count} shards per table)",
        flush=True,
    )
    env = {
        **os.environ,
        "TEST_DATABASE_URL": cluster.url,
        "BILLING_CITUS_SHARD_COUNT": str(args.shard_count),
        SUITE_ON_CITUS: "1",
    }
    try:
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
