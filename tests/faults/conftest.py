"""Fixtures of the fault-injection suite: a DAGU_HOME with short timings and a canary API
token, process bookkeeping that kills whatever a test started, and small helpers to start the
controller and runs as real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.invariants import CANARY, db_path, kill_all, run_ids
from tests.helpers import dagu_home

HEARTBEAT_TIMEOUT = 2.0
RESYNC = 0.5


@pytest.fixture
def fenv(tmp_path: Path) -> dict[str, str]:
    """Subprocess env: isolated DAGU_HOME, 1 s shutdown grace, 0.5 s resync, 0.2 s heartbeat
    (2 s timeout), and the controller's own API token set to the canary (it must never reach
    a step, a log, the database or an API body)."""
    env = dagu_home(tmp_path)
    env.update(
        DAGU_CONTROLLER_SHUTDOWN_GRACE_SECONDS="1",
        DAGU_CONTROLLER_RESYNC_INTERVAL_SECONDS=str(RESYNC),
        DAGU_CONTROLLER_HEARTBEAT_INTERVAL_SECONDS="0.2",
        DAGU_CONTROLLER_HEARTBEAT_TIMEOUT_SECONDS=str(HEARTBEAT_TIMEOUT),
        DAGU_AUTH_TOKEN=CANARY,
    )
    return env


@pytest.fixture
def procs(fenv: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; killed (with everything of its DAGU_HOME) at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait()
    home = Path(fenv["DAGU_HOME"])
    kill_all(home, run_ids(home))


class Clock:
    """The controller's injected clock, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def loop_home(fenv: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process's environment set to the test's home, for in-process controllers."""
    for k in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(k)
    for k, v in fenv.items():
        if k.startswith("DAGU_") or k == "PYTHONPATH":
            monkeypatch.setenv(k, v)
    home = home_of(fenv)
    yield home
    kill_all(home, run_ids(home))


def home_of(env: dict[str, str]) -> Path:
    """The DAGU_HOME of an env."""
    return Path(env["DAGU_HOME"])


def write_dag(env: dict[str, str], name: str, text: str) -> Path:
    """Write `dags/<name>.yaml` (dedented)."""
    path = home_of(env) / "dags" / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def spawn(
    env: dict[str, str], procs: list[subprocess.Popen[bytes]], *args: str, **kw: object
) -> subprocess.Popen[bytes]:
    """`python -m controller ARGS` in the background, tracked for cleanup."""
    p = subprocess.Popen(
        [sys.executable, "-m", "controller", *args],
        env=env,
        stdout=kw.pop("stdout", subprocess.DEVNULL),  # type: ignore[arg-type]
        stderr=kw.pop("stderr", subprocess.DEVNULL),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    procs.append(p)
    return p


def query(env: dict[str, str], sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of a read-only query on the test's database ([] before it exists)."""
    path = db_path(home_of(env))
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def run_row(env: dict[str, str], dag: str) -> dict[str, object] | None:
    """The latest run row of `dag` as a dict (None if none)."""
    path = db_path(home_of(env))
    if not path.exists():
        return None
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        row = con.execute(
            "SELECT * FROM runs WHERE dag_name=? ORDER BY id DESC LIMIT 1", (dag,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return dict(row) if row is not None else None


def step_pgid(env: dict[str, str], step: str) -> int | None:
    """The process group of a running step (None until it runs)."""
    rows = query(env, "SELECT pgid FROM steps WHERE name=? AND status=1", (step,))
    return int(rows[0][0]) if rows and rows[0][0] else None  # type: ignore[call-overload]


def instance_status(env: dict[str, str], pid: int) -> str | None:
    """The recorded status (standby/active/stopped) of the controller with `pid`."""
    rows = query(env, "SELECT status FROM instances WHERE pid=?", (pid,))
    return str(rows[-1][0]) if rows else None
