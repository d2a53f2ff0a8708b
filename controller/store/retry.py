"""Waiting out an unreachable state database: `open_store` opens the store of the settings, and
`retry_unavailable` sends a store call again, each with capped backoff and jitter
(`controller.outage.retry_delay_seconds`) while the database refuses with `StoreUnavailable`,
for up to `database.waitSeconds` (`settings.database_wait_seconds`) or, for the long-running
processes, until it answers.

Only calls that are safe to send again are retried: nothing of a refused transaction was kept.
When an outage began and how long it lasted is each caller's own `controller.outage.Outage`;
the runner's buffered writes ride out an outage in `controller.engine.writes`.

Callers: every process that opens the store (the verbs, the runner's start, the control loop,
the workers, the API's server), and the runner's start, to read and claim its queued run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from controller.outage import retry_delay_seconds
from controller.store.records import StoreUnavailable
from controller.store.store import Store

T = TypeVar("T")

# A store call's own wait for a lock, for the long-running processes and by default.
_LOCK_WAIT_SECONDS = 30.0
_MIN_LOCK_WAIT_SECONDS = 1.0


def retry_unavailable(
    action: Callable[[], T],
    *,
    wait_seconds: float | None,
    on_wait: Callable[[StoreUnavailable], None] | None = None,
) -> T:
    """`action()`, tried again with capped backoff and jitter while it raises
    `StoreUnavailable`, for up to `wait_seconds` (None: until it answers); then that error is
    raised. `on_wait` is called once, at the first refusal. For calls that are safe to send
    again (opening, a claim, a conditional update): nothing of a refused transaction was
    kept."""
    give_up_at = None if wait_seconds is None else time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return action()
        except StoreUnavailable as exc:
            attempt += 1
            delay = retry_delay_seconds(attempt)
            if give_up_at is not None and time.monotonic() + delay > give_up_at:
                raise
            if attempt == 1 and on_wait is not None:
                on_wait(exc)
            time.sleep(delay)  # nothing to do without the database


def open_store(
    settings: Any,
    *,
    readonly: bool = False,
    role: str = "cli",
    forever: bool = False,
    on_wait: Callable[[StoreUnavailable], None] | None = None,
) -> Store:
    """The store of `settings`: PostgreSQL when `database_url` is set, else the SQLite file.

    An unreachable database (`StoreUnavailable`) is tried again with capped backoff and
    jitter for up to `settings.database_wait_seconds` (`forever`: until it answers, for the
    long-running processes), then its error is raised; `on_wait` is called once, at the
    first refusal."""
    location: Path | str = settings.database_url or settings.db_path
    wait = None if forever else float(settings.database_wait_seconds)
    return retry_unavailable(
        lambda: Store(location, readonly=readonly, role=role, timeout_seconds=lock_wait(wait)),
        wait_seconds=wait,
        on_wait=on_wait,
    )


def lock_wait(wait_seconds: float | None) -> float:
    """How long one store call waits for a lock (SQLite's busy timeout; PostgreSQL's connect
    timeout): `_LOCK_WAIT_SECONDS`, but never past a verb's own bound
    (`database.waitSeconds`: one locked call must not outlast it); at least a second, so that
    an ordinary short write of another process is not taken for an outage."""
    if wait_seconds is None:
        return _LOCK_WAIT_SECONDS
    return min(_LOCK_WAIT_SECONDS, max(wait_seconds, _MIN_LOCK_WAIT_SECONDS))
