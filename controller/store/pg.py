"""PostgreSQL under the store: a psycopg 3 connection with the surface `Store` uses of sqlite3.

`Store` writes one SQL text for both databases, in SQLite's parameter style (`?`). This module
turns it into psycopg's (`%s`, with literal `%` doubled) once per distinct text, gives rows that
read both by position and by column name (as `sqlite3.Row` does), and reconnects a connection
the server dropped (a restart, `pg_terminate_backend`, a cut network) before the next statement
or transaction — never in the middle of one, where the caller sees the error and nothing of the
transaction is kept.

psycopg is imported only here, so the embedded SQLite path never pays for it.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg

from controller import faults
from controller.store.records import StoreUnavailable

__all__ = [
    "PgConnection",
    "PgRow",
    "application_name",
    "is_postgres_url",
    "libpq_url",
    "listen",
    "redact_url",
]

# Errors that mean "the connection is gone", as opposed to a bad statement.
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def is_postgres_url(location: object) -> bool:
    """Whether `location` is a PostgreSQL URL (`postgresql://`, `postgresql+psycopg://`, …)."""
    return isinstance(location, str) and re.match(r"postgres(ql)?(\+\w+)?://", location) is not None


def libpq_url(url: str) -> str:
    """The URL libpq understands: SQLAlchemy's driver suffix (`+psycopg`) removed."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PgRow(tuple[Any, ...]):
    """A result row readable as `row[0]`, `row["name"]` and `dict(row)`."""

    _names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        """Column names, in order."""
        return self._names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    return type("Row", (PgRow,), {"_names": names, "__slots__": ()})


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    cls = _row_class(tuple(c.name for c in cursor.description or ()))

    def make(values: Sequence[Any]) -> PgRow:
        return cls(values)

    return make


@lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    # Our SQL texts never hold a `?` inside a literal; `%` appears in LIKE patterns.
    sql = sql.replace("%", "%%").replace("?", "%s")
    sql = sql.replace("BEGIN IMMEDIATE", "BEGIN")
    return re.sub(r"\binstr\(", "strpos(", sql)


class PgConnection:
    """One PostgreSQL session in autocommit mode; transactions are explicit BEGIN … COMMIT."""

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        timeout_seconds: float = 30.0,
        application_name: str = "dagloop",
    ) -> None:
        self._url = libpq_url(url)
        self.where = redact_url(url)  # for messages: the URL as configured, password hidden
        self._readonly = readonly
        self._timeout = timeout_seconds
        self._app = application_name
        self._in_tx = False
        self._con = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        # One attempt: a CLI reports an unreachable server at once, and the long-running
        # processes (controller, worker) retry on their next pass.
        con = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=max(1, int(min(self._timeout, 10))),
            application_name=self._app,
            # A peer that vanished (host down, cable cut) is noticed within ~15 s, so its
            # session-level locks (the leader's) are released.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=5,
            row_factory=_row_factory,
        )
        if self._readonly:
            con.execute("SET default_transaction_read_only = on")
        return con

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The psycopg connection (for LISTEN/NOTIFY and advisory locks)."""
        return self._con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """Run one statement (`?` placeholders). Outside a transaction, a dropped connection
        is reopened and the statement sent once more; inside one, the error is raised (the
        transaction died with the session)."""
        query = _translate(sql)
        if self._con.closed or self._con.broken:
            if self._in_tx:
                raise psycopg.OperationalError("the connection to PostgreSQL was lost")
            self._reconnect()
        try:
            return self._con.execute(query, list(params))
        except _CONNECTION_ERRORS:
            if self._in_tx or not (self._con.closed or self._con.broken):
                raise
            self._reconnect()
            try:
                return self._con.execute(query, list(params))
            except _CONNECTION_ERRORS as exc:
                raise self._unavailable(exc) from None

    def _reconnect(self) -> None:
        """A new session for a dropped one; `StoreUnavailable` while the server is away."""
        try:
            self._con = self._connect()
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        # psycopg's text may span lines (one per address tried): one line for logs and CLIs
        text = " ".join(str(exc).split())
        return StoreUnavailable(f"{self.where}: the state database is unreachable: {text}")

    def begin(self) -> None:
        """BEGIN, reconnecting first if the session was dropped since the last statement."""
        self._in_tx = False
        self.execute("BEGIN")
        self._in_tx = True

    def finish(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK the open transaction."""
        try:
            if commit:
                self._con.execute("COMMIT")
            elif not (self._con.closed or self._con.broken):
                self._con.execute("ROLLBACK")
        finally:
            self._in_tx = False

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """One atomic write: BEGIN … COMMIT (ROLLBACK on error). A session lost in the middle
        raises `StoreUnavailable` naming the server (password redacted); nothing of it is kept."""
        try:
            self.begin()
            try:
                yield self
            except BaseException:
                self.finish(commit=False)
                raise
            faults.point("commit.before")  # test-only crash points (controller/faults.py)
            self.finish(commit=True)
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from None
        faults.point("commit.after")

    def close(self) -> None:
        """Close the session (its session-level locks go with it)."""
        self._con.close()


def application_name(role: str) -> str:
    """`dagloop-<role>@<host>:<pid>`: who holds a session, as `pg_stat_activity` shows it."""
    return f"dagloop-{role}@{socket.gethostname()}:{os.getpid()}"[:63]


def listen(
    url: str, channel: str, on_notify: Callable[[], None], stopped: Callable[[], bool]
) -> threading.Thread:
    """Start a daemon thread that calls `on_notify` on every NOTIFY of `channel` until
    `stopped()`; a dropped session is reopened after a second (callers poll as well, so a gap
    only delays them)."""

    def loop() -> None:
        while not stopped():
            try:
                with psycopg.connect(
                    libpq_url(url), autocommit=True, application_name=application_name("listen")
                ) as con:
                    con.execute(f"LISTEN {channel}")
                    on_notify()  # something may have happened while we were not listening
                    while not stopped():
                        for _ in con.notifies(timeout=1.0):
                            on_notify()
            except psycopg.Error:
                time.sleep(1.0)

    thread = threading.Thread(target=loop, daemon=True, name=f"listen-{channel}")
    thread.start()
    return thread
