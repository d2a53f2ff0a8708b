"""A throwaway PostgreSQL server for the tests: `initdb` into a temp dir, `pg_ctl start` on
127.0.0.1 and a free port, `pg_ctl stop -m immediate` at the end. No system service is used.

Debian's `postgresql` package provides the binaries (`.ci/run` installs it). initdb refuses to
run as root, so as root the cluster belongs to the `postgres` user (made by that package).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin_dir() -> Path | None:
    """The directory of `pg_ctl` and `initdb`, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(versions[0]).parent if versions else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running cluster; `url(db)` gives a psycopg URL of one of its databases."""

    def __init__(self, bin_dir: Path, root: Path, port: int, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self._user = user  # run the server binaries as this user (when we are root)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self, *, fsync: bool = False) -> None:
        """initdb (trust auth on loopback, user `dagloop`) and start listening; without
        `fsync` (tests), commits skip the disk flush: the data is thrown away anyway."""
        self._run("initdb", "-D", str(self.data), "-U", "dagloop", "--auth=trust", "-E", "UTF8")
        self._options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=300"
        if not fsync:
            self._options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.resume()

    def resume(self) -> None:
        """Start the stopped server again (same data, same port); returns once it listens."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options, "-l", str(self.root / "log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self, *, mode: str = "immediate") -> None:
        """Stop the server: `immediate` (no checkpoint, every session cut at once, as a crash
        or a failover) or `fast`. Data kept; `resume` starts it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def resume_if_stopped(self) -> None:
        """`resume` unless the server is running."""
        if self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode != 0:
            self.resume()

    def restart(self) -> None:
        """`pg_ctl restart -m immediate`: every session cut, the server back at once."""
        self.stop()
        self.resume()

    def url(self, database: str = "postgres") -> str:
        """A `postgresql+psycopg://` URL of `database`, as users write DAGU_DATABASE_URL."""
        return f"postgresql+psycopg://dagloop@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database with a unique name; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server(*, fsync: bool = False) -> Iterator[PostgresServer | None]:
    """A started throwaway server (None if PostgreSQL is not installed here)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="dagloop-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, root, free_port(), user)
    try:
        server.start(fsync=fsync)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
