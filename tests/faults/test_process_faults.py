"""Fault scenarios 1-8 of issue 8: the controller or a runner killed, stops of steps that fork,
escape their group or ignore signals. Real processes, real signals; invariants at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    HEARTBEAT_TIMEOUT,
    RESYNC,
    home_of,
    instance_status,
    query,
    run_row,
    spawn,
    step_pgid,
    write_dag,
)
from tests.faults.invariants import assert_invariants, processes_of
from tests.helpers import group_alive, run_cli, wait_until

pytestmark = pytest.mark.timeout(60)

LONG = """
maxCleanUpTimeSec: 1
steps:
  - name: sleeper
    command: sleep 300
"""


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return not data[data.rfind(b")") + 2 :].startswith(b"Z")


def _instance_beat(env: dict[str, str], pid: int) -> float:
    rows = query(env, "SELECT heartbeat_at FROM instances WHERE pid=?", (pid,))
    return float(rows[-1][0]) if rows else 0.0  # type: ignore[arg-type]


def _passes(env: dict[str, str], pid: int, n: int = 2) -> None:
    """Wait until the controller `pid` has recorded `n` more resyncs (so it has had time to
    act on what it saw)."""
    start = _instance_beat(env, pid)
    wait_until(lambda: _instance_beat(env, pid) >= start + n * RESYNC, 10)


def _stop_controller(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0


def _start_fg(
    env: dict[str, str], procs: list[subprocess.Popen[bytes]], dag: str
) -> subprocess.Popen[bytes]:
    return spawn(env, procs, "start", "--json", "-q", dag, stdout=subprocess.PIPE)


def test_01_controller_sigkill_run_continues_and_is_adopted(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "long", LONG)
    ctl = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    code, _out, err = run_cli("enqueue", "long", env=fenv)
    assert code == 0, err
    pgid = wait_until(lambda: step_pgid(fenv, "sleeper"), 15)
    assert isinstance(pgid, int)
    row = run_row(fenv, "long")
    assert row is not None and row["pid"]
    runner = int(row["pid"])  # type: ignore[call-overload]
    ctl.kill()
    ctl.wait()
    # the run lives on under its runner: never failed while its processes live
    assert _pid_alive(runner) and group_alive(pgid)
    ctl2 = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl2.pid) == "active", 10)
    _passes(fenv, ctl2.pid)
    row = run_row(fenv, "long")
    assert row is not None and row["status"] == 1, row  # adopted, not lost
    assert _pid_alive(runner) and group_alive(pgid)
    assert len(query(fenv, "SELECT id FROM runs")) == 1  # not duplicated
    code, _out, err = run_cli("stop", "long", "--wait", "10", env=fenv)
    assert code == 0, err
    wait_until(lambda: (run_row(fenv, "long") or {}).get("status") == 3, 10)
    assert not group_alive(pgid)
    _stop_controller(ctl2)
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_02_status_after_the_runner_died_says_lost(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "long", LONG)
    p = _start_fg(fenv, procs, "long")
    pgid = wait_until(lambda: step_pgid(fenv, "sleeper"), 15)
    assert isinstance(pgid, int)
    p.kill()
    p.wait()
    code, out, _ = run_cli("status", "long", env=fenv)
    assert code != 0
    assert "lost" in out.splitlines()[0] and "running" not in out.splitlines()[0]
    code, out, _ = run_cli("status", "long", "--json", env=fenv)
    assert code == 0
    doc = json.loads(out)
    assert doc["liveness"] == "lost"
    # The API reads the same recorded liveness: never a plain `running` for a dead runner.
    import time as _time

    import falcon.testing

    from controller.commands.server import build_app
    from model.config import load_settings

    app = build_app(load_settings(env=fenv), started_at=_time.time())
    api = falcon.testing.TestClient(app)
    got = api.simulate_get(
        "/api/v2/dag-runs/long/latest",
        headers={"Authorization": f"Bearer {fenv['DAGU_AUTH_TOKEN']}"},
    )
    assert got.status_code == 200, got.text
    details = got.json["dagRunDetails"]
    assert details["statusLabel"] == "failed" and details["error"].startswith("lost")
    assert [n["statusLabel"] for n in details["nodes"]] == ["failed"]
    # the orphan step is reaped by the next status --reap (or controller pass)
    code, out, _ = run_cli("status", "long", "--reap", env=fenv)
    wait_until(lambda: not group_alive(pgid), 5)
    row = run_row(fenv, "long")
    assert row is not None and row["status"] == 2 and str(row["error"]).startswith("lost: ")
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_03_controller_restart_marks_dead_running_rows_lost_within_one_resync(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "long", LONG)
    ctl = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    assert run_cli("enqueue", "long", env=fenv)[0] == 0
    pgid = wait_until(lambda: step_pgid(fenv, "sleeper"), 15)
    assert isinstance(pgid, int)
    row = run_row(fenv, "long")
    assert row is not None
    ctl.kill()
    ctl.wait()
    os.kill(int(row["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    ctl2 = spawn(fenv, procs, "scheduler")
    t0 = time.monotonic()
    wait_until(lambda: (run_row(fenv, "long") or {}).get("status") == 2, 10)
    assert time.monotonic() - t0 < 3 + RESYNC  # start-up + one resync
    row = run_row(fenv, "long")
    assert row is not None and str(row["error"]) == "lost: runner process is gone"
    wait_until(lambda: not group_alive(pgid), 5)  # its leftover step was killed too
    steps = query(fenv, "SELECT status, error FROM steps WHERE name='sleeper'")
    assert steps[0][0] == 2 and str(steps[0][1]).startswith("lost: ")
    _stop_controller(ctl2)
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_04_retry_while_previous_processes_live_never_runs_two_copies(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    marks = tmp_path / "copies"
    write_dag(
        fenv,
        "r",
        f"""
        maxCleanUpTimeSec: 1
        steps:
          - name: once
            command: sh -c 'echo $$ >> {marks}; exec sleep 300'
        """,
    )
    p = _start_fg(fenv, procs, "r")
    pgid = wait_until(lambda: step_pgid(fenv, "once"), 15)
    assert isinstance(pgid, int)
    row = run_row(fenv, "r")
    assert row is not None
    run_id = str(row["run_id"])
    # 1. runner alive: refused
    code, _out, err = run_cli("retry", "r", "--run-id", run_id, env=fenv)
    assert code == 1 and "still running" in err
    # 2. runner killed, its step orphaned: the retry kills the old group first
    p.kill()
    p.wait()
    assert group_alive(pgid)
    retry = spawn(fenv, procs, "retry", "-q", "r", "--run-id", run_id)
    wait_until(lambda: len(marks.read_text().split()) == 2, 15)
    assert not group_alive(pgid)
    copies = [int(x) for x in marks.read_text().split()]
    assert sum(_pid_alive(c) for c in copies) == 1
    retry.send_signal(signal.SIGTERM)
    assert retry.wait(timeout=15) == 1
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_05_stop_kills_every_child_in_the_step_group(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(
        fenv,
        "fork",
        """
        maxCleanUpTimeSec: 1
        steps:
          - name: forks
            command: sh -c 'sleep 300 & sleep 301 & (sleep 302 & wait) & wait'
        """,
    )
    p = _start_fg(fenv, procs, "fork")
    pgid = wait_until(lambda: step_pgid(fenv, "forks"), 15)
    assert isinstance(pgid, int)
    row = run_row(fenv, "fork")
    assert row is not None
    wait_until(lambda: len(processes_of(home_of(fenv), [str(row["run_id"])])) >= 5, 5)
    t0 = time.monotonic()
    assert run_cli("stop", "fork", env=fenv)[0] == 0
    assert p.wait(timeout=15) == 1
    wait_until(lambda: not group_alive(pgid), 3)
    assert time.monotonic() - t0 < 1 + 3  # maxCleanUpTimeSec + margin
    assert (run_row(fenv, "fork") or {}).get("status") == 3
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.mark.parametrize("capture", [False, True], ids=["to-file", "output-capture"])
def test_06_stop_finds_and_kills_setsid_escapees(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]], capture: bool
) -> None:
    out = "\n            output: RESULT" if capture else ""
    write_dag(
        fenv,
        "esc",
        f"""
        maxCleanUpTimeSec: 1
        steps:
          - name: escape
            command: sh -c 'setsid sleep 300 & (setsid sh -c "sleep 301" &) ; sleep 302'{out}
        """,
    )
    p = _start_fg(fenv, procs, "esc")
    pgid = wait_until(lambda: step_pgid(fenv, "escape"), 15)
    assert isinstance(pgid, int)
    row = run_row(fenv, "esc")
    assert row is not None
    run_id = str(row["run_id"])
    # the escapees have their own sessions, outside the step's group
    wait_until(lambda: len(processes_of(home_of(fenv), [run_id])) >= 4, 5)
    t0 = time.monotonic()
    assert run_cli("stop", "esc", env=fenv)[0] == 0
    assert p.wait(timeout=15) == 1
    assert time.monotonic() - t0 < 6
    assert (run_row(fenv, "esc") or {}).get("status") == 3
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_06b_escapee_holding_the_output_pipe_never_blocks_the_end_of_the_step(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(
        fenv,
        "hold",
        """
        steps:
          - name: leaves
            command: sh -c 'echo hello; setsid sleep 300 &'
            output: RESULT
          - name: next
            command: echo ${RESULT}
        """,
    )
    t0 = time.monotonic()
    code, out, err = run_cli("start", "--json", "-q", "hold", env=fenv, timeout=30)
    assert code == 0, err
    assert time.monotonic() - t0 < 10
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["outputs"] == {"result": "hello"}
    # nothing of the run outlives it, not even the escapee of a succeeded run
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_07_step_ignoring_sigterm_is_killed_after_max_clean_up_time(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(
        fenv,
        "stubborn",
        """
        maxCleanUpTimeSec: 1
        steps:
          - name: deaf
            shell: bash
            command: trap '' TERM; sleep 300 & wait; sleep 300
        """,
    )
    p = _start_fg(fenv, procs, "stubborn")
    pgid = wait_until(lambda: step_pgid(fenv, "deaf"), 15)
    assert isinstance(pgid, int)
    t0 = time.monotonic()
    assert run_cli("stop", "stubborn", env=fenv)[0] == 0
    assert p.wait(timeout=15) == 1
    assert 0.9 <= time.monotonic() - t0 < 5
    assert not group_alive(pgid)
    row = run_row(fenv, "stubborn")
    assert row is not None and row["status"] == 3
    log = Path(str(row["log_file"])).read_text()
    assert "SIGKILL" in log and "deaf" in log and str(pgid) in log
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_08_signal_on_stop_sigint_first_then_sigkill(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    write_dag(
        fenv,
        "int",
        f"""
        maxCleanUpTimeSec: 1
        steps:
          - name: noint
            shell: bash
            signalOnStop: SIGINT
            command: >-
              trap 'echo INT >> {marks}' INT; trap 'echo TERM >> {marks}' TERM;
              echo READY >> {marks}; while :; do sleep 0.1; done
        """,
    )
    p = _start_fg(fenv, procs, "int")
    pgid = wait_until(lambda: step_pgid(fenv, "noint"), 15)
    assert isinstance(pgid, int)
    # the step says when its traps are installed
    wait_until(lambda: marks.exists() and "READY" in marks.read_text(), 15)
    assert run_cli("stop", "int", env=fenv)[0] == 0
    assert p.wait(timeout=15) == 1
    assert not group_alive(pgid)
    got = marks.read_text().split()
    assert got[:2] == ["READY", "INT"] and "TERM" not in got
    row = run_row(fenv, "int")
    assert row is not None and row["status"] == 3
    assert "SIGKILL" in Path(str(row["log_file"])).read_text()
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
