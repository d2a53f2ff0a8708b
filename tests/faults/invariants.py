"""Invariants every fault test asserts at its end (issue 8).

- **no orphans**: no live process carries the test's ``DAGU_HOME`` or one of its run ids
  (``DAG_RUN_ID``) in ``/proc/PID/environ``;
- **no duplicates**: at most one run per DAG and scheduled instant;
- **bounded staleness**: no ``running`` row without a live runner beyond the heartbeat timeout
  plus one resync;
- **nothing lost**: every run that started has a final status;
- **no leaks**: the canary secret appears in no log file (except a step's own output), not in
  the database files, no API body and no ``/proc/*/cmdline``.

Pure test code: reads /proc and the SQLite file directly, never our own store code, so a bug
in the store cannot hide itself. Used by every module of tests/faults.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

# A value that must never leave the place it was put: the controller's own API token in the
# fault tests' environment, and a secret param in the leak tests.
CANARY = "canary-7b1e0d5c9a-secret"

RUNNING, WAITING, QUEUED, NOT_STARTED = 1, 7, 5, 0
FINAL = {2, 3, 4, 6, 8}


def db_path(home: Path) -> Path:
    """The state database of a DAGU_HOME (default layout)."""
    return home / "data" / "dagloop.db"


def _rows(home: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    path = db_path(home)
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:  # no tables yet
        if "no such table" in str(exc):
            return []
        raise
    except sqlite3.DatabaseError:  # a test that damaged the file on purpose
        return []
    finally:
        con.close()


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 :].startswith(b"Z")


def processes_of(home: Path, run_ids: Iterable[str] = ()) -> list[int]:
    """Live (non-zombie) pids whose environment names `home` as DAGU_HOME or a run id."""
    wants = {f"DAGU_HOME={home}".encode()} | {f"DAG_RUN_ID={r}".encode() for r in run_ids}
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        env = _environ(int(name))
        if env and wants.intersection(env) and not _is_zombie(int(name)):
            out.append(int(name))
    return out


def kill_all(home: Path, run_ids: Iterable[str] = ()) -> None:
    """SIGKILL every process of the test (cleanup after a failed assertion)."""
    for pid in processes_of(home, run_ids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_ids(home: Path) -> list[str]:
    """Every run id recorded in the store."""
    return [str(r[0]) for r in _rows(home, "SELECT run_id FROM runs")]


def assert_no_orphans(home: Path, *, timeout: float = 5.0) -> None:
    """No process of this DAGU_HOME or of its runs is alive (waits up to `timeout` for exits)."""
    ids = run_ids(home)
    deadline = time.monotonic() + timeout
    left = processes_of(home, ids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_of(home, ids)
    if left:
        desc = [_cmdline(p) for p in left]
        kill_all(home, ids)
        raise AssertionError(f"orphan processes of the test: {list(zip(left, desc, strict=True))}")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def assert_no_duplicates(home: Path) -> None:
    """At most one run per DAG and scheduled instant."""
    dups = _rows(
        home,
        "SELECT dag_name, scheduled_at, COUNT(*) FROM runs WHERE scheduled_at IS NOT NULL "
        "GROUP BY dag_name, scheduled_at HAVING COUNT(*) > 1",
    )
    assert not dups, f"duplicate runs per scheduled instant: {dups}"


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not _is_zombie(pid)


def assert_bounded_staleness(
    home: Path, *, heartbeat_timeout_seconds: float, resync_seconds: float
) -> None:
    """No running row whose runner is dead and whose heartbeat is older than the bound."""
    bound = heartbeat_timeout_seconds + resync_seconds
    now = time.time()
    stale = [
        (dag, rid, pid, hb)
        for dag, rid, pid, hb, upd in _rows(
            home,
            "SELECT dag_name, run_id, pid, heartbeat_at, updated_at FROM runs "
            "WHERE status IN (?, ?)",
            (RUNNING, WAITING),
        )
        if not (pid is not None and _pid_alive(int(pid)))  # type: ignore[call-overload]
        and now - float(hb if hb is not None else upd) > bound  # type: ignore[arg-type]
    ]
    assert not stale, f"running rows without a live runner beyond {bound} s: {stale}"


def assert_nothing_lost(home: Path) -> None:
    """Every run that started (not merely queued) has a final status."""
    open_rows = _rows(
        home,
        "SELECT dag_name, run_id, status FROM runs WHERE status NOT IN (2,3,4,6,8) "
        "AND NOT (status = ? AND started_at IS NULL)",
        (QUEUED,),
    )
    assert not open_rows, f"runs without a final status: {open_rows}"


def assert_no_leaks(
    home: Path,
    canary: str = CANARY,
    *,
    api_bodies: Iterable[bytes | str] = (),
    allowed_files: Iterable[Path] = (),
) -> None:
    """The canary is absent from logs (but `allowed_files`: a step's own output), the database
    files, the given API bodies and every /proc/*/cmdline."""
    needle = canary.encode()
    allowed = {p.resolve() for p in allowed_files}
    hits: list[str] = []
    for path in home.rglob("*"):
        if not path.is_file() or path.resolve() in allowed:
            continue
        if path.parent == home and path.name in ("config.yaml", ".env"):
            continue  # where the operator put the secret
        if (path.suffix in (".yaml", ".yml", ".env") or path.name == ".env") and (
            "dags" in path.parts
        ):
            continue  # the user's own DAG and dotenv files (`.env` has no suffix)
        try:
            if needle in path.read_bytes():
                hits.append(str(path))
        except OSError:
            continue
    for body in api_bodies:
        data = body.encode() if isinstance(body, str) else body
        if needle in data:
            hits.append(f"API body {data[:80]!r}")
    for name in os.listdir("/proc"):
        if name.isdigit() and needle in _cmdline(int(name)).encode():
            hits.append(f"/proc/{name}/cmdline")
    assert not hits, f"canary leaked into: {hits}"


def assert_step_env_clean(run_id: str, canary: str = CANARY) -> None:
    """No live process of run `run_id` (its steps) has the canary in its environment."""
    want = f"DAG_RUN_ID={run_id}".encode()
    needle = canary.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        env = _environ(int(name))
        if want in env:
            assert not any(needle in e for e in env), f"canary in the environment of pid {name}"


def assert_invariants(
    home: Path,
    *,
    heartbeat_timeout_seconds: float = 2.0,
    resync_seconds: float = 0.5,
    canary: str = CANARY,
    api_bodies: Iterable[bytes | str] = (),
    allowed_files: Iterable[Path] = (),
) -> None:
    """All five invariants, in an order where a failure leaves nothing running."""
    assert_no_orphans(home)
    assert_no_duplicates(home)
    assert_bounded_staleness(
        home, heartbeat_timeout_seconds=heartbeat_timeout_seconds, resync_seconds=resync_seconds
    )
    assert_nothing_lost(home)
    assert_no_leaks(home, canary, api_bodies=api_bodies, allowed_files=allowed_files)
