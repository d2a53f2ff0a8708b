"""Who leads: the exclusive right of one controller to plan and act, per state database.

Two implementations of one small interface (`Leadership`): on the embedded SQLite home an
exclusive `flock` on `<data_dir>/controller.lock` (the kernel drops it with the process); on
PostgreSQL a session-level advisory lock held by a connection of its own (the server drops it
with the session: a killed leader's lock is free at once, a vanished host's within the TCP
keepalive time, ~15 s). Nothing home-made: both are the operating system's or the database's.

A leader checks `still_held` before every pass; a PostgreSQL session can be lost under a live
process (server restart, `pg_terminate_backend`, a cut network), and then another controller may
already lead: the loop stops acting at once (see `controller.loop.controller`). Scheduled ticks
stay safe
even in that window: a tick's run row is unique in the database.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import IO, Any, Protocol

log = logging.getLogger("dagloop.controller")

LOCK_FILE = "controller.lock"
# pg_advisory_lock key of the leader: hashtext('dagloop:leader') computed by the server, so
# every dagloop version agrees on it.
_PG_KEY_SQL = "hashtext('dagloop:leader')"


class Leadership(Protocol):
    """The exclusive right to act."""

    def try_acquire(self) -> bool:
        """Take the lock without waiting; True if this process now holds it."""
        ...

    def still_held(self) -> bool:
        """Whether the lock taken by `try_acquire` is still ours."""
        ...

    def release(self) -> None:
        """Give the lock up (no-op when not held)."""
        ...

    def describe(self) -> str:
        """What the lock is, for log lines."""
        ...


class FileLeadership:
    """`flock` on a file: one controller per DAGU_HOME on one host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        """Take the exclusive lock without waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # held for the life of the leader
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def still_held(self) -> bool:
        """A file lock cannot be taken from a live process."""
        return self._fh is not None

    def release(self) -> None:
        """Unlock and close the file."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def describe(self) -> str:
        """The lock file's path."""
        return str(self.path)


class PostgresLeadership:
    """A session-level advisory lock on a connection used for nothing else."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: Any = None  # controller.store.pg.PgConnection while connected

    def _connection(self) -> Any:
        from controller.store.pg import PgConnection, application_name

        if self._con is None:
            self._con = PgConnection(
                self.url, timeout_seconds=5.0, application_name=application_name("leader")
            )
        return self._con

    def try_acquire(self) -> bool:
        """`pg_try_advisory_lock`; an unreachable server is "not acquired", retried later."""
        try:
            con = self._connection()
            row = con.execute(f"SELECT pg_try_advisory_lock({_PG_KEY_SQL})").fetchone()
        except Exception as exc:  # psycopg errors: the server is away; stay standby
            log.warning("leader election: cannot reach PostgreSQL", extra={"error": str(exc)})
            self._drop()
            return False
        return bool(row[0])

    def still_held(self) -> bool:
        """Our session still lives: a session-level lock ends only with it (or an unlock).
        Asked on the raw connection, never through a reconnect, which would be a new session
        without the lock."""
        if self._con is None:
            return False
        con = self._con.connection
        if con.closed or con.broken:
            return False
        try:
            con.execute("SELECT 1")
        except Exception:
            return False
        return True

    def release(self) -> None:
        """Unlock by closing the session."""
        self._drop()

    def _drop(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            except Exception:
                pass
            self._con = None

    def describe(self) -> str:
        """The advisory lock and the server."""
        from controller.store.pg import redact_url

        return f"advisory lock 'dagloop:leader' on {redact_url(self.url)}"


def leadership_for(settings: Any) -> Leadership:
    """The lock of the settings' database."""
    if settings.database_url:
        return PostgresLeadership(settings.database_url)
    return FileLeadership(settings.data_dir / LOCK_FILE)
