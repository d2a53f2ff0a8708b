"""The SQLite store held by another process: its write lock taken for 15 s (a backup tool,
`sqlite3` at a prompt) while runs run under the controller. Nothing is lost: the runners
wait, the controller does not take their silence for death, every run ends once, succeeded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import HEARTBEAT_TIMEOUT, home_of, query, spawn, write_dag
from tests.faults.invariants import assert_invariants, db_path
from tests.helpers import run_cli, wait_until

pytestmark = pytest.mark.timeout(120)

# Another process: take SQLite's write lock, say so, hold it 15 s (the fault's length), let go.
_HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(15)
db.execute("COMMIT")
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_write_lock_held_15_s_by_another_process_loses_nothing(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    env = fenv
    marks = home_of(env) / "marks"
    write_dag(
        env,
        "job",
        f"""\
        maxActiveRuns: 3
        steps:
          - echo "start $DAG_RUN_ID" >> {marks}; sleep 3; echo "end $DAG_RUN_ID" >> {marks}
        """,
    )
    ctl = spawn(env, procs, "scheduler")
    for i in range(3):
        assert run_cli("enqueue", "--run-id", f"r{i}", "job", env=env)[0] == 0
    wait_until(lambda: len(_lines(marks)) == 3, timeout=30)
    locker = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(db_path(home_of(env)))],
        stdout=subprocess.PIPE,
    )
    procs.append(locker)
    assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
    assert locker.wait(timeout=40) == 0  # the steps ended meanwhile; nothing could be written
    wait_until(
        lambda: [r[0] for r in query(env, "SELECT status FROM runs")] == [4, 4, 4], timeout=30
    )
    assert sorted(_lines(marks)) == sorted(f"{w} r{i}" for i in range(3) for w in ("start", "end"))
    assert [r[0] for r in query(env, "SELECT error FROM runs")] == ["", "", ""]
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=20) == 0
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


# The lock held until the test lets go (a line on stdin), not for a fixed time.
_HOLD_LOCK_UNTIL_TOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_a_runner_that_cannot_claim_its_run_leaves_it_queued_for_the_next_runner(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    env = {**fenv, "DAGU_DATABASE_WAIT_SECONDS": "1"}
    marks = home_of(env) / "marks"
    write_dag(env, "job", f'steps:\n  - echo "ran $DAG_RUN_ID" >> {marks}\n')
    assert run_cli("enqueue", "--run-id", "r0", "job", env=env)[0] == 0
    locker = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK_UNTIL_TOLD, str(db_path(home_of(env)))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    procs.append(locker)
    assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
    # the runner the loop would start for r0, while the database stays away past waitSeconds
    code, _, err = run_cli("start", "-q", "--run-id", "r0", "job", env=env, timeout=90)
    assert code == 75, err  # not started: hand it out again (EX_TEMPFAIL)
    assert "not started, the database is unavailable" in err and "Traceback" not in err
    # one locked call waits no longer than the verb's bound (not SQLite's usual 30 s)
    assert "stayed locked by another process for 1 s" in err
    assert locker.stdin is not None
    locker.stdin.write(b"go\n")
    locker.stdin.close()
    assert locker.wait(timeout=30) == 0
    assert query(env, "SELECT status, error FROM runs") == [(5, "")]  # still queued, no mark
    ctl = spawn(env, procs, "scheduler")  # the loop starts it again, once
    wait_until(lambda: query(env, "SELECT status FROM runs") == [(4,)], timeout=30)
    assert _lines(marks) == ["ran r0"]
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=20) == 0
