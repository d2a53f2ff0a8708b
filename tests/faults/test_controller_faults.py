"""Fault scenarios of the controller (issue 8): #9 SIGTERM, #10 watchdog (sd_notify), #16 down
over ticks, #17 restart inside a fired minute, #18 two controllers, #19 paused leader, #20
concurrent manual starts, #21 kill -9 at every state write, #25 retention, #31 a stuck run.

Subprocess tests use `dagloop scheduler`; tick tests run the loop in-process with an injected
clock (the only fake: time) and real runner processes."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.loop.controller import Controller
from controller.store.filters import RunFilter
from model.config import load_settings
from tests.faults.conftest import (
    HEARTBEAT_TIMEOUT,
    RESYNC,
    Clock,
    home_of,
    instance_status,
    query,
    run_row,
    spawn,
    step_pgid,
    write_dag,
)
from tests.faults.invariants import assert_invariants, db_path
from tests.helpers import run_cli, wait_until

pytestmark = pytest.mark.timeout(90)


def _runs(env: dict[str, str], dag: str) -> list[tuple[object, ...]]:
    return query(env, "SELECT run_id, status, error FROM runs WHERE dag_name=? ORDER BY id", (dag,))


# ----------------------------------------------------------------------------- 9, 10


def test_09_sigterm_is_graceful_and_exits_0_inside_timeout_stop_sec(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "forever", "maxCleanUpTimeSec: 1\nsteps:\n  - command: sleep 300\n")
    ctl = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    assert run_cli("enqueue", "forever", env=fenv)[0] == 0
    wait_until(lambda: step_pgid(fenv, "forever") or step_pgid(fenv, "cmd_1"), 15)
    t0 = time.monotonic()
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 30  # the unit's TimeoutStopSec
    (run,) = _runs(fenv, "forever")
    assert run[1] == 3 and run[2] == "controller shutdown"
    assert instance_status(fenv, ctl.pid) == "stopped"
    # the lock is released: a new controller leads at once
    ctl2 = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl2.pid) == "active", 10)
    ctl2.send_signal(signal.SIGINT)
    assert ctl2.wait(timeout=15) == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    yield s, path
    s.close()


def _messages(s: socket.socket, until: str, timeout: float = 10) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(s.recv(4096).decode())
        except TimeoutError:
            break
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} within {timeout} s; got {got}")


def test_10_sd_notify_ready_watchdog_stopping_and_silence_when_stopped(
    fenv: dict[str, str],
    procs: list[subprocess.Popen[bytes]],
    notify_socket: tuple[socket.socket, str],
) -> None:
    s, path = notify_socket
    env = dict(fenv, NOTIFY_SOCKET=path, WATCHDOG_USEC="600000")  # pings every <= 0.3 s
    write_dag(env, "echo", "steps:\n  - command: env\n")
    ctl = spawn(env, procs, "scheduler")
    assert any("READY=1" in m for m in _messages(s, "READY=1"))
    _messages(s, "WATCHDOG=1")
    t0 = time.monotonic()
    pings = [m for m in _messages(s, "WATCHDOG=1") if "WATCHDOG=1" in m]
    assert pings and time.monotonic() - t0 < 0.6 + 0.5
    # a stopped loop goes silent (systemd would kill and restart it) ...
    ctl.send_signal(signal.SIGSTOP)
    try:
        while True:  # drain what was sent before the stop took effect
            s.settimeout(0.3)
            s.recv(4096)
    except TimeoutError:
        pass
    s.settimeout(1.2)  # two watchdog periods
    with pytest.raises(TimeoutError):
        s.recv(4096)
    # ... and pings again once resumed
    ctl.send_signal(signal.SIGCONT)
    _messages(s, "WATCHDOG=1")
    # runners and steps never inherit the notify socket
    assert run_cli("enqueue", "echo", env=env)[0] == 0
    wait_until(lambda: any(r[1] == 4 for r in _runs(env, "echo")), 15)
    out = (home_of(env) / "logs").rglob("*.out")
    assert all("NOTIFY_SOCKET" not in p.read_text() for p in out)
    ctl.send_signal(signal.SIGTERM)
    _messages(s, "STOPPING=1")
    assert ctl.wait(timeout=15) == 0
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_10_sdnotify_without_socket_is_a_no_op_and_abstract_names_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller.loop.sdnotify import Notifier

    env: dict[str, str] = {}
    n = Notifier(env)
    assert not n.enabled and not n.ready() and not n.watchdog()
    name = f"dagloop-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"}
        n = Notifier(env)
        assert env == {}  # removed: children must not inherit them
        assert n.watchdog_seconds == 1.0
        assert n.ready("standby")
        assert s.recv(100) == b"READY=1\nSTATUS=standby"
    # WATCHDOG_PID of another process: the watchdog is not ours
    assert Notifier({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_seconds is None


# ----------------------------------------------------------------------------- 18, 19


def test_18_two_controllers_exactly_one_leads(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    a = spawn(fenv, procs, "scheduler")
    b = spawn(fenv, procs, "scheduler")
    wait_until(
        lambda: (
            {instance_status(fenv, a.pid), instance_status(fenv, b.pid)} == {"active", "standby"}
        ),
        10,
    )
    leader, standby = (a, b) if instance_status(fenv, a.pid) == "active" else (b, a)
    leader.kill()
    leader.wait()
    wait_until(lambda: instance_status(fenv, standby.pid) == "active", 5)
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=15) == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_19_sigstopped_leader_keeps_the_lock_no_split_brain_no_duplicate(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """With flock on one host a stopped leader keeps its lock: the standby waits, nothing is
    launched twice. (A lease that can expire — PostgreSQL, issue 9 — needs fencing; not here.)"""
    write_dag(fenv, "once", "steps:\n  - command: sleep 0.2\n")
    leader = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, leader.pid) == "active", 10)
    standby = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, standby.pid) == "standby", 10)
    leader.send_signal(signal.SIGSTOP)
    try:
        assert run_cli("enqueue", "once", env=fenv)[0] == 0
        # paused for longer than a heartbeat timeout: the standby still waits
        t0 = time.monotonic()
        while time.monotonic() - t0 < HEARTBEAT_TIMEOUT + RESYNC:
            assert instance_status(fenv, standby.pid) == "standby"
            assert all(r[1] == 5 for r in _runs(fenv, "once"))  # nobody launched it
            time.sleep(0.1)
    finally:
        leader.send_signal(signal.SIGCONT)
    wait_until(lambda: [r[1] for r in _runs(fenv, "once")] == [4], 15)
    leader.send_signal(signal.SIGTERM)
    assert leader.wait(timeout=15) == 0
    wait_until(lambda: instance_status(fenv, standby.pid) == "active", 5)
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=15) == 0
    assert len(_runs(fenv, "once")) == 1
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


# ----------------------------------------------------------------------------- 20


def test_20_concurrent_manual_starts_respect_max_active_runs(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "one", "maxActiveRuns: 1\nsteps:\n  - command: sleep 1\n")
    starts = [spawn(fenv, procs, "start", "-q", "one", stderr=subprocess.PIPE) for _ in range(3)]
    results = [(p.wait(timeout=30), p.stderr.read().decode()) for p in starts]  # type: ignore[union-attr]
    ok = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(ok) == 1, results
    assert all("maxActiveRuns" in err for _, err in refused), results
    assert len([r for r in _runs(fenv, "one") if r[1] == 4]) == 1
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


# ----------------------------------------------------------------------------- 21


def _snapshot(env: dict[str, str], dag: str) -> tuple[object, ...]:
    row = run_row(env, dag)
    if row is None:
        return ()
    steps = query(
        env, "SELECT name, status, exit_code FROM steps WHERE run=? ORDER BY position", (row["id"],)
    )
    return (row["status"], tuple(steps))


def _integrity(env: dict[str, str]) -> str:
    con = sqlite3.connect(db_path(home_of(env)))
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def test_21_kill_9_at_every_state_write_leaves_a_valid_store(fenv: dict[str, str]) -> None:
    """Crash `dagloop start` at its n-th commit (before and after COMMIT) for every n: the
    store stays sound; the state after commit n equals the state before commit n+1 (nothing
    committed is lost, nothing half-written appears); the reaped run is final, no orphan."""
    env = dict(fenv, DAGU_CONTROLLER_HEARTBEAT_INTERVAL_SECONDS="600")  # no timer commits
    write_dag(
        env, "w", "steps:\n  - name: a\n    command: sleep 0.05\n  - name: b\n    command: echo b\n"
    )
    assert run_cli("start", "-q", "w", env=env)[0] == 0  # warm: schema and tables exist
    after: dict[int, tuple[object, ...]] = {}
    before: dict[int, tuple[object, ...]] = {}
    n = 1
    while True:
        code, _, err = run_cli(
            "start", "-q", "w", env=dict(env, DAGLOOP_FAULT_POINT=f"commit.before:{n}")
        )
        if code != 137:
            assert code == 0, err  # n is past the last commit: the run completed
            break
        before[n] = _snapshot(env, "w")
        assert _integrity(env) == "ok"
        run_cli("status", "w", "--reap", env=env)
        code, _, _ = run_cli(
            "start", "-q", "w", env=dict(env, DAGLOOP_FAULT_POINT=f"commit.after:{n}")
        )
        assert code in (137, 0)
        after[n] = _snapshot(env, "w")
        assert _integrity(env) == "ok"
        run_cli("status", "w", "--reap", env=env)
        row = run_row(env, "w")
        assert row is not None and row["status"] in (2, 3, 4, 6), row
        n += 1
        assert n < 60
    assert n > 4  # a two-step run commits several times
    for k in range(1, n - 1):
        assert after[k] == before[k + 1], (k, after[k], before[k + 1])
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_21_controller_killed_between_record_and_spawn_starts_the_run_once(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "q", 'steps:\n  - command: "true"\n')
    ctl = spawn(dict(fenv, DAGLOOP_FAULT_POINT="apply.launch.recorded"), procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    # a restart request (as the API would record it) makes the controller create the run
    con = sqlite3.connect(db_path(home_of(fenv)))
    with con:
        con.execute(
            "INSERT INTO requests (kind, dag_name, created_at) VALUES ('restart', 'q', ?)",
            (time.time(),),
        )
    con.close()
    assert ctl.wait(timeout=15) == 137
    assert [r[1] for r in _runs(fenv, "q")] == [5]  # recorded, never spawned
    ctl2 = spawn(fenv, procs, "scheduler")
    wait_until(lambda: [r[1] for r in _runs(fenv, "q")] == [4], 15)
    ctl2.send_signal(signal.SIGTERM)
    assert ctl2.wait(timeout=15) == 0
    assert len(_runs(fenv, "q")) == 1
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


# ----------------------------------------------------------------------------- in-process ticks

T0 = datetime(2026, 3, 2, 12, 0, 0, 500000, tzinfo=UTC).timestamp()


def _controller(clock: Clock) -> Controller:
    c = Controller(load_settings(), clock=clock)
    c.refresh_catalog(force=True)
    return c


def _close(c: Controller) -> None:
    for p in c.applier.running_children():
        p.wait(timeout=20)
    c.store.close()


def _settle(c: Controller, dag: str, count: int) -> None:
    def done() -> bool:
        c.pass_once()
        rs = c.store.list_runs(RunFilter(dag_name=dag))
        return len(rs) >= count and all(r.status.is_final() for r in rs)

    wait_until(done, 20, interval=0.05)


def test_16_controller_down_over_three_ticks_catch_up_policy_and_missed_count(
    loop_home: Path,
) -> None:
    (loop_home / "dags" / "cu.yaml").write_text(
        'schedule: "* * * * *"\ncatchupWindowSec: 120\noverlapPolicy: all\nmaxActiveRuns: 5\n'
        'steps:\n  - command: "true"\n'
    )
    (loop_home / "dags" / "nocu.yaml").write_text(
        'schedule: "* * * * *"\nsteps:\n  - command: "true"\n'
    )
    clock = Clock(T0)
    c = _controller(clock)
    _settle(c, "cu", 1)
    _settle(c, "nocu", 1)
    _close(c)
    clock.t += 3 * 60 + 30  # down over the ticks 12:01, 12:02, 12:03
    c = _controller(clock)
    _settle(c, "cu", 4)
    _settle(c, "nocu", 2)
    start = datetime.fromtimestamp(T0, UTC).replace(microsecond=0)
    cu = sorted(r.scheduled_at or 0 for r in c.store.list_runs(RunFilter(dag_name="cu")))
    # catchupWindowSec 120: the ticks of the last two minutes are replayed, once each
    # the first pass replayed 11:59 (within 120 s); 12:01 fell out of the window while down
    assert cu == [(start + timedelta(minutes=m)).timestamp() for m in (-1, 0, 2, 3)]
    nocu = sorted(r.scheduled_at or 0 for r in c.store.list_runs(RunFilter(dag_name="nocu")))
    assert nocu == [(start + timedelta(minutes=m)).timestamp() for m in (0, 3)]
    assert c.pass_once() == []
    _close(c)
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_16_ticks_missed_while_down_are_recorded(loop_home: Path) -> None:
    (loop_home / "dags" / "nocu.yaml").write_text(
        'schedule: "* * * * *"\nsteps:\n  - command: "true"\n'
    )
    clock = Clock(T0)
    c = _controller(clock)
    _settle(c, "nocu", 1)
    _close(c)
    clock.t += 3 * 60 + 30  # down over 12:01, 12:02 (missed) and 12:03 (still in its minute)
    c = _controller(clock)
    _settle(c, "nocu", 2)
    assert c.applier.missed_runs["nocu"] == 2
    start = datetime.fromtimestamp(T0, UTC).replace(microsecond=0)
    skipped = c.store.list_skipped_ticks(since=0)
    assert [(d, at) for d, at, _ in skipped] == [
        ("nocu", (start + timedelta(minutes=m)).timestamp()) for m in (1, 2)
    ]
    assert all("controller not running" in why for _, _, why in skipped)
    assert c.store.skipped_totals() == {"nocu": 2}
    _close(c)
    # a second restart (same instant, as after a crash loop) records nothing twice
    c = _controller(clock)
    for _ in range(3):
        c.pass_once()
    assert c.applier.missed_runs["nocu"] == 0
    assert c.store.skipped_totals() == {"nocu": 2}
    assert len(c.store.list_runs(RunFilter(dag_name="nocu"))) == 2
    _close(c)
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_17_restart_inside_a_fired_minute_launches_nothing_twice(loop_home: Path) -> None:
    (loop_home / "dags" / "m.yaml").write_text(
        'schedule: "* * * * *"\nsteps:\n  - command: "true"\n'
    )
    clock = Clock(T0)
    c = _controller(clock)
    _settle(c, "m", 1)
    _close(c)
    clock.t += 20  # same minute, new controller with an empty memory
    c = _controller(clock)
    for _ in range(3):
        c.pass_once()
    assert len(c.store.list_runs(RunFilter(dag_name="m"))) == 1
    _close(c)
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_25_retention_prunes_runs_of_deleted_and_renamed_dags(loop_home: Path) -> None:
    dag = loop_home / "dags" / "old.yaml"
    dag.write_text('histRetentionDays: 1\nsteps:\n  - command: "true"\n')
    clock = Clock(T0)
    c = _controller(clock)
    assert run_cli("enqueue", "old", env=dict(os.environ))[0] == 0
    _settle(c, "old", 1)
    dag.rename(loop_home / "dags" / "new.yaml")  # renamed: "old" is now a removed DAG
    c.refresh_catalog(force=True)
    clock.t += 31 * 86400  # beyond the default retention of removed DAGs (30 days)
    (row,) = c.store.list_runs(RunFilter(dag_name="old"))
    c.store.update_run(row.id, finished_at=clock.t - 31 * 86400)
    t0 = time.monotonic()
    c.pass_once()
    assert time.monotonic() - t0 < 2
    assert c.store.list_runs(RunFilter(dag_name="old")) == []
    assert not (loop_home / "logs" / "old" / row.run_id).exists()
    _close(c)
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_31_a_stuck_run_skips_ticks_with_a_record_but_not_for_ever(loop_home: Path) -> None:
    (loop_home / "dags" / "stuck.yaml").write_text(
        'schedule: "* * * * *"\nmaxCleanUpTimeSec: 1\nsteps:\n  - command: sleep 300\n'
    )
    clock = Clock(T0)
    c = _controller(clock)
    run = wait_until(
        lambda: (
            (c.pass_once() or True)
            and next((r for r in c.store.list_runs(RunFilter(dag_name="stuck")) if r.pid), None)
        ),
        15,
    )
    assert run is not None
    clock.t += 60  # next tick while the run is active: skipped (overlapPolicy skip), counted
    c.pass_once()
    assert len(c.store.list_runs(RunFilter(dag_name="stuck"))) == 1
    assert c.applier.missed_runs["stuck"] == 1
    os.kill(run.pid, signal.SIGSTOP)  # type: ignore[attr-defined]  # stuck: no heartbeats
    try:
        t0 = time.monotonic()

        def lost() -> bool:
            c.pass_once()
            return c.store.get_run_by_id(run.id).status.is_final()  # type: ignore[attr-defined]

        wait_until(lost, HEARTBEAT_TIMEOUT + 5)
        assert time.monotonic() - t0 < HEARTBEAT_TIMEOUT + RESYNC + 2
    finally:
        try:
            os.kill(run.pid, signal.SIGCONT)  # type: ignore[attr-defined]
        except ProcessLookupError:
            pass
    assert c.store.get_run_by_id(run.id).error.startswith("lost: ")  # type: ignore[attr-defined]
    clock.t += 60  # the schedule is free again
    wait_until(
        lambda: (
            (c.pass_once() or True) and len(c.store.list_runs(RunFilter(dag_name="stuck"))) == 2
        ),
        10,
    )
    new = next(r for r in c.store.list_runs(RunFilter(dag_name="stuck")) if r.id != run.id)  # type: ignore[attr-defined]

    def step_running() -> bool:
        return any(st.status == 1 for st in c.store.list_steps(new.id))

    wait_until(step_running, 15)
    pid = c.store.get_run_by_id(new.id).pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # stop it as `dagloop stop` would
    wait_until(lambda: (c.pass_once() or True) and c.store.get_run_by_id(new.id).status == 3, 15)
    _close(c)
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
