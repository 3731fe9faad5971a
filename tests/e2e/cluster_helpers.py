"""An external PostgreSQL for the deployment tests: Debian's PostgreSQL (the `postgresql`
package, which `make test` installs when missing) in a temporary folder on a loopback port,
with password logins, TLS on (a self-signed certificate made here) and the roles of
``infra/sql/roles.sql``; and Debian's PgBouncer in front of it.

The tests reach it as a deployment would: ``billing migrate`` as the migrator, ``billing serve``
and ``billing worker`` as the runtime role, over TCP. As root (CI here), the servers run as the
``postgres`` system user (PostgreSQL and PgBouncer both refuse to run as root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.postgres_processes import as_server_user, own, stop_server

ROLES_SQL = Path(__file__).resolve().parents[2] / "infra" / "sql" / "roles.sql"
MIGRATOR = "billing_migrator"
RUNTIME = "billing_runtime"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's programs (initdb, pg_ctl, psql, pg_dump, ...)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def require_postgres() -> Path:
    found = postgres_bin()
    if found is None:
        pytest.skip(
            "Debian's PostgreSQL is not installed (`make test` installs the postgresql and"
            " pgbouncer packages when it can: run it as root or with sudo)"
        )
    return found


@dataclass
class Cluster:
    """One PostgreSQL server; ``admin_password`` is the `postgres` superuser's."""

    bin: Path
    root: Path
    port: int
    admin_password: str
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate: the CA a client verifies it with."""
        return self.root / "server.crt"

    def url(self, role: str, database: str, *, port: int | None = None, query: str = "") -> str:
        password = self.admin_password if role == "postgres" else self.passwords[role]
        url = f"postgresql://{role}:{password}@127.0.0.1:{port or self.port}/{database}"
        return f"{url}?{query}" if query else url

    def psql(self, database: str, *args: str, sql: str | None = None) -> str:
        """psql as the superuser; ``sql`` runs one command, ``args`` pass on (``-f``, ``-v``)."""
        command = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database]
        command += [*args, *(["-c", sql] if sql is not None else [])]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PGPASSWORD": self.admin_password},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_billing_database(self, database: str) -> None:
        """``infra/sql/roles.sql`` as documented: the roles (once), the database, the grants."""
        self.passwords.setdefault(MIGRATOR, secrets.token_hex(12))
        self.passwords.setdefault(RUNTIME, secrets.token_hex(12))
        self.psql(
            "postgres",
            "-v", f"database={database}",
            "-v", f"migrator_password={self.passwords[MIGRATOR]}",
            "-v", f"runtime_password={self.passwords[RUNTIME]}",
            "-f", str(ROLES_SQL),
        )  # fmt: skip

    def stop(self) -> None:
        stop_server(self.bin, self.data_dir)
        shutil.rmtree(self.root, ignore_errors=True)


def _self_signed_certificate(root: Path) -> None:
    """A certificate for 127.0.0.1 (what the clients connect to), valid for a day."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(root / "server.key"), "-out", str(root / "server.crt"),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    (root / "server.key").chmod(0o600)
    own(root / "server.key")
    own(root / "server.crt")


def start_cluster(*, max_connections: int = 100) -> Cluster:
    bin_dir = require_postgres()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the TLS certificate cannot be made")
    root = Path(tempfile.mkdtemp(prefix="kefu-billing-pg-"))
    root.chmod(0o755)  # the server user reads the certificate the tests also read
    own(root)
    password = secrets.token_hex(12)
    (root / "pw").write_text(password + "\n")
    own(root / "pw")
    _self_signed_certificate(root)
    subprocess.run(
        as_server_user([
            str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
            f"--pwfile={root / 'pw'}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        ]),
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    (root / "pw").unlink()
    port = free_port()
    settings = [
        "listen_addresses=127.0.0.1",
        f"port={port}",
        f"unix_socket_directories={root}",
        f"max_connections={max_connections}",
        "ssl=on",
        f"ssl_cert_file={root / 'server.crt'}",
        f"ssl_key_file={root / 'server.key'}",
        "fsync=off",  # a throw-away server: durability is not what these tests check
    ]
    options = " ".join(f"-c {setting}" for setting in settings)
    started = subprocess.run(
        as_server_user([
            str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        ]),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )  # fmt: skip
    if started.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise AssertionError(f"PostgreSQL did not start: {started.stderr}\n{log}")
    return Cluster(bin=bin_dir, root=root, port=port, admin_password=password)


@dataclass
class Bouncer:
    """PgBouncer in transaction pooling in front of a `Cluster`."""

    process: subprocess.Popen[bytes]
    root: Path
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text() if path.exists() else ""


def start_pgbouncer(cluster: Cluster, *, server_connections: int) -> Bouncer:
    """Transaction pooling with at most ``server_connections`` PostgreSQL connections per
    database and role, many clients: what makes a prepared statement outlive its connection."""
    program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(program).exists():
        pytest.skip(
            "Debian's pgbouncer is not installed (`make test` installs it when it can: run it"
            " as root or with sudo)"
        )
    root = Path(tempfile.mkdtemp(prefix="kefu-billing-pgbouncer-"))
    port = free_port()
    users = "".join(f'"{role}" "{password}"\n' for role, password in cluster.passwords.items())
    (root / "userlist.txt").write_text(users)
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={cluster.port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {root / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {server_connections}\n"
        "max_client_conn = 500\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
    )
    (root / "userlist.txt").chmod(0o600)
    for path in (root, root / "userlist.txt", root / "pgbouncer.ini"):
        own(path)
    process = subprocess.Popen(
        as_server_user([program, str(root / "pgbouncer.ini")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    bouncer = Bouncer(process=process, root=root, port=port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("pgbouncer exited:\n" + bouncer.log)
        if "process up" in bouncer.log:
            return bouncer
        time.sleep(0.1)
    bouncer.stop()
    raise AssertionError("pgbouncer did not start:\n" + bouncer.log)
