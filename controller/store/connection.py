"""The embedded SQLite database under the store: opening the file (WAL, foreign keys), and the
write transaction — the writers' queue in the kernel, SQLite's write lock taken with a short
jittered retry, and a refused write (full disk, I/O error) reported as `StoreError`.

`controller.store.store.Store` holds one `SqliteSession` per SQLite connection and speaks SQL
through `SqliteSession.db`; `controller.store.pg.PgConnection` is the PostgreSQL counterpart
(same `transaction()` and `close()`). Standard library only: every runner opens the store.
"""

from __future__ import annotations

import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from controller import faults
from controller.diskfull import full_note
from controller.store.records import StoreError, StoreUnavailable

# SQLite's texts for a write the file system refused (SQLITE_FULL, SQLITE_IOERR).
_WRITE_ERRORS = ("database or disk is full", "disk i/o error")


def write_error(path: Path, exc: sqlite3.Error) -> StoreError | None:
    """A `StoreUnavailable` naming `path` and the reason when `exc` is SQLite's report of a
    full disk or a failed write (with ENOSPC named when the file system has no block left,
    since SQLite does not pass the errno on); None for any other error. Unavailable, not
    broken: space freed, the same write goes through, so a runner keeps it and retries."""
    text = str(exc)
    if text.lower() not in _WRITE_ERRORS:
        return None
    note = full_note(path.parent)
    return StoreUnavailable(f"{path}: cannot write the state database: {text}{note}")


class SqliteSession:
    """One connection to the SQLite file at `path` (read-only when asked) and its writes.

    `prepare` is called once, by the store, with its schema check. A file that cannot be
    opened raises `StoreError` here; `prepare` lets SQLite's error through, for the store to
    report with `open_error` (its schema check raises `StoreError` of its own).
    """

    def __init__(self, path: Path, *, readonly: bool, timeout_seconds: float) -> None:
        self.path = path
        self._timeout = timeout_seconds
        self._writers: int | None = None  # the writers' queue lock (`_queue_for_writing`)
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"file:{path}?mode=ro",
                    uri=True,
                    timeout=timeout_seconds,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(
                    path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
                )
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise self.open_error(exc) from None

    def open_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        """The error to raise when the file cannot be opened or is not a dagloop database."""
        return StoreError(
            f"{self.path}: cannot open the state database: {exc}{full_note(self.path.parent)}"
        )

    def prepare(self, check_schema: Callable[[], None]) -> None:
        """WAL mode, then `check_schema()`, retried while another process creates the file.

        Switching a new file to WAL does not wait on SQLite's busy handler: two processes
        opening a fresh database at once (two controllers, a controller and a runner) get
        "database is locked" for a moment, which is transient, not an error to report.
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives a process crash; only power loss
                # can drop the last commits, never corrupt the file.
                self.db.execute("PRAGMA synchronous=NORMAL")
                check_schema()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            time.sleep(delay)  # back off: the other process holds the file for milliseconds
            delay = min(delay * 2, 0.2)

    def close(self) -> None:
        """Close the connection and the writers' queue descriptor."""
        self.db.close()
        if self._writers is not None:
            os.close(self._writers)
            self._writers = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE … COMMIT (ROLLBACK on error).

        A write the file system refused (full disk, I/O error) raises `StoreError` naming
        the file and the reason, after the rollback: nothing of the transaction is kept.
        """
        queued = self._queue_for_writing()
        try:
            self._begin_immediate()
            try:
                yield self.db
            except BaseException:
                # SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR)
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            faults.point("commit.before")  # test-only crash points (controller/faults.py)
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            error = write_error(self.path, exc)
            if error is None and "locked" in str(exc):
                # another process held the write lock past the timeout: it will let go
                error = StoreUnavailable(
                    f"{self.path}: the state database stayed locked by another process "
                    f"for {self._timeout:g} s"
                )
            if error is None:
                raise
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise error from None
        finally:
            if queued is not None:
                fcntl.flock(queued, fcntl.LOCK_UN)
        faults.point("commit.after")

    def _queue_for_writing(self) -> int | None:
        """Wait in the kernel for this database's writers' lock (`flock` on `<db>-writers`,
        held from BEGIN to COMMIT); its descriptor, or None when the lock file cannot be
        made.

        SQLite's write lock can only be polled. With fifty runners writing at one minute
        boundary on two cores, the pollers kept a holder that had been preempted off the
        CPU for tens of milliseconds (median wait 20 ms per write); queued here, waiters
        sleep until their turn and the holder gets the CPU. The kernel releases the lock of
        a process that dies. A frozen holder (SIGSTOP) holds SQLite's lock too: the others
        then wait here rather than fail after the timeout. Writers that do not queue (other
        tools) are still handled by `_begin_immediate`.
        """
        if self._writers is None:
            try:
                self._writers = os.open(
                    f"{self.path}-writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError:  # e.g. a full disk: poll SQLite's lock alone
                return None
        fcntl.flock(self._writers, fcntl.LOCK_EX)
        return self._writers

    def _begin_immediate(self) -> None:
        """Take SQLite's write lock, retrying every 0.5-2 ms (jittered) while another
        process holds it, up to the connection's timeout.

        SQLite's own busy handler backs off to 100 ms sleeps: with 50 runners claiming their
        runs at one minute boundary, a runner would sleep long after the lock came free
        (each holder keeps it for well under a millisecond), which made the tail of the
        firing delay. So the handler is off while the lock is taken, and on again for the
        reads (WAL readers are rarely blocked, and then briefly).
        """
        deadline = time.monotonic() + self._timeout
        self.db.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(random.uniform(0.0005, 0.002))
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
