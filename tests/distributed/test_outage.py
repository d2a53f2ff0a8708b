"""PostgreSQL goes away under running runs (restart `-m immediate`, a stop of several
seconds): nothing is lost. Each test has the module's own server (`own_pg`), which it stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import falcon.testing

from controller import runlogs
from controller.commands.server import build_app
from controller.runjournal import JOURNAL_FILE
from model.config import load_settings
from model.status import RunStatus, StepStatus
from tests.distributed.conftest import Cluster
from tests.helpers import run_cli, wait_until
from tests.pg import PostgresServer


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _attempt_dir(cluster: Cluster, dag: str) -> Path:
    (run,) = cluster.runs(dag)
    log_dir = load_settings(env=cluster.env).log_dir
    return runlogs.attempt_dir(log_dir, dag, run.run_id, run.attempt)


def _ride_dag(cluster: Cluster, marks: Path) -> None:
    cluster.write_dag(
        "ride",
        f"""
        steps:
          - name: a
            command: sh -c 'echo start >> {marks}; sleep 3; echo end >> {marks}'
          - name: b
            command: sh -c 'echo b >> {marks}'
            depends: [a]
        """,
    )


def test_a_runner_rides_out_a_restart_and_a_stop_of_the_database(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    cluster, pg = outage
    marks = cluster.tmp / "marks"
    _ride_dag(cluster, marks)
    runner = cluster.spawn("start", "-q", "ride", name="start")
    wait_until(lambda: _lines(marks) == ["start"], timeout=30)
    pg.restart()  # every session cut while step a runs
    pg.stop()  # and the database away while a ends and b runs
    wait_until(lambda: _lines(marks) == ["start", "end", "b"], timeout=30)
    assert runner.poll() is None  # waiting for the database, its steps all done
    pg.resume()
    assert runner.wait(timeout=30) == 0
    (run,) = cluster.runs("ride")
    assert run.status == RunStatus.SUCCEEDED and run.error == "" and run.notes == ""
    with cluster.store() as s:
        assert [st.status for st in s.list_steps(run.id)] == [StepStatus.SUCCEEDED] * 2
    journal = _attempt_dir(cluster, "ride")
    assert not (journal / JOURNAL_FILE).exists()  # everything in it is in the database
    log = (journal / runlogs.RUN_LOG).read_text()
    # one line at each end of an outage (the restart, if a write fell into it, and the stop),
    # never one per retry
    began = log.count("buffering writes")
    assert 1 <= began <= 2 and log.count("database reachable again") == began, log


def test_a_runner_killed_during_the_outage_leaves_its_end_in_its_journal(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    cluster, pg = outage
    marks = cluster.tmp / "marks"
    _ride_dag(cluster, marks)
    runner = cluster.spawn("start", "-q", "ride", name="start")
    wait_until(lambda: _lines(marks) == ["start"], timeout=30)
    attempt = _attempt_dir(cluster, "ride")
    pg.stop()
    journal = attempt / JOURNAL_FILE
    # the run's end is in the journal once its last step is done and the write was refused
    wait_until(lambda: '"status": 4' in (journal.read_text() if journal.exists() else ""), 30)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    pg.resume()
    _code, out, err = run_cli("status", "--reap", "ride", env=cluster.env)
    (run,) = cluster.runs("ride")
    assert run.status == RunStatus.SUCCEEDED, (out, err, run)
    with cluster.store() as s:
        assert [st.status for st in s.list_steps(run.id)] == [StepStatus.SUCCEEDED] * 2
    assert not journal.exists()


class Supervisor:
    """Keeps `dagloop ARGS` running as systemd's `Restart=always` would: `poll()` starts it
    again whenever it has exited (a leader that lost its session exits 3)."""

    def __init__(self, cluster: Cluster, *args: str, name: str, host: str = "") -> None:
        self.cluster, self.args, self.name, self.host = cluster, args, name, host
        self.restarts = 0
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self.host:
            return self.cluster.spawn_on_host(self.host, *self.args, name=self.name)
        return self.cluster.spawn(*self.args, name=self.name)

    def poll(self) -> bool:
        """Restart the process if it exited; always False (for use inside `wait_until`)."""
        if self.proc.poll() is not None:
            self.restarts += 1
            self.proc = self._spawn()
        return False


def _marks_done(marks: Path, ids: list[str]) -> bool:
    lines = _lines(marks)
    return all(f"end {i}" in lines for i in ids)


def _all_final(cluster: Cluster, dag: str, count: int) -> bool:
    runs = cluster.runs(dag)
    return len(runs) == count and all(r.status.is_final() for r in runs)


def _assert_each_ran_once_and_succeeded(cluster: Cluster, dag: str, marks: Path) -> None:
    runs = cluster.runs(dag)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * len(runs), [
        (r.run_id, r.status, r.error) for r in runs
    ]
    assert sorted(_lines(marks)) == sorted(
        f"{what} {r.run_id}" for r in runs for what in ("start", "end")
    )


def _mark_dag(cluster: Cluster, marks: Path, *, seconds: int) -> None:
    cluster.write_dag(
        "job",
        f"""
        maxActiveRuns: 10
        steps:
          - echo "start $DAG_RUN_ID" >> {marks}; sleep {seconds}; echo "end $DAG_RUN_ID" >> {marks}
        """,
    )


def _down_until(pg: PostgresServer, done: Callable[[], object], *supervised: Supervisor) -> None:
    """Stop the database until `done()` (polled; the supervisor keeps restarting what
    exits meanwhile), then start it again."""
    pg.stop()
    try:
        wait_until(lambda: any(s.poll() for s in supervised) or done(), timeout=60, interval=0.2)
    finally:
        pg.resume()


def _next_run_starts_within_20_s(cluster: Cluster, marks: Path, *supervised: Supervisor) -> None:
    cluster.enqueue("job", 1)
    started = time.monotonic()
    wait_until(
        lambda: any(s.poll() for s in supervised) or _all_final(cluster, "job", 11),
        timeout=60,
        interval=0.2,
    )
    (last,) = [r for r in cluster.runs("job") if r.run_id.endswith("0010")]
    assert last.started_at is not None and last.started_at - last.created_at < 20.0
    assert time.monotonic() - started < 60


def test_restart_immediate_then_a_10_s_stop_while_runs_are_running(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    """The issue's experiment: 10 one-step runs under a supervised scheduler; PostgreSQL
    restarted with `-m immediate` while they run, then stopped while their steps end."""
    cluster, pg = outage
    marks = cluster.tmp / "marks"
    _mark_dag(cluster, marks, seconds=4)
    leader = Supervisor(cluster, "scheduler", name="scheduler")
    cluster.enqueue("job", 10)
    ids = [f"job-{i:04d}" for i in range(10)]
    wait_until(lambda: leader.poll() or len(_lines(marks)) == 10, timeout=60, interval=0.2)
    pg.restart()
    # down for as long as the steps take to end (about 4 s, 10 s at most in the issue)
    _down_until(pg, lambda: _marks_done(marks, ids), leader)
    wait_until(lambda: leader.poll() or _all_final(cluster, "job", 10), timeout=60, interval=0.2)
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)
    _next_run_starts_within_20_s(cluster, marks, leader)
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)


def test_health_is_degraded_and_the_outage_counted_while_the_database_is_away(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    cluster, pg = outage
    settings = load_settings(env=cluster.env)
    api = falcon.testing.TestClient(build_app(settings, started_at=time.time()))
    assert api.simulate_get("/api/v2/health").json["status"] == "healthy"
    pg.stop()
    try:
        down = api.simulate_get("/api/v2/health")
        assert down.status_code == 200 and down.json["status"] == "degraded"
        assert down.json["database"].startswith("unreachable:")
        metrics = api.simulate_get("/api/v2/metrics")
        assert metrics.status_code == 200 and "dagloop_store_available 0.0" in metrics.text
    finally:
        pg.resume()
    assert api.simulate_get("/api/v2/health").json["status"] == "healthy"
    text = api.simulate_get("/api/v2/metrics").text
    assert "dagloop_store_available 1.0" in text
    (seconds,) = [
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("dagloop_store_unavailable_seconds_total ")
    ]
    assert seconds > 0


def test_an_outage_while_a_worker_on_another_host_holds_claimed_runs(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    cluster, pg = outage
    marks = cluster.tmp / "marks"
    cluster.write_config("scheduler:\n  dispatch: workers\n")
    _mark_dag(cluster, marks, seconds=4)
    leader = Supervisor(cluster, "scheduler", name="scheduler")
    worker = Supervisor(cluster, "worker", "-w", "a", "-m", "10", name="worker", host="host-a")
    cluster.enqueue("job", 10)
    ids = [f"job-{i:04d}" for i in range(10)]
    wait_until(
        lambda: leader.poll() or worker.poll() or len(_lines(marks)) == 10,
        timeout=60,
        interval=0.2,
    )
    assert {r.host for r in cluster.runs("job")} == {"host-a"}
    _down_until(pg, lambda: _marks_done(marks, ids), leader, worker)
    wait_until(
        lambda: leader.poll() or worker.poll() or _all_final(cluster, "job", 10),
        timeout=60,
        interval=0.2,
    )
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)
    assert worker.restarts == 0  # the worker rode the outage out
    _next_run_starts_within_20_s(cluster, marks, leader, worker)
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)


def test_an_outage_during_a_leader_handover(outage: tuple[Cluster, PostgresServer]) -> None:
    cluster, pg = outage
    marks = cluster.tmp / "marks"
    _mark_dag(cluster, marks, seconds=4)
    first = Supervisor(cluster, "scheduler", name="first")
    cluster.enqueue("job", 10)
    ids = [f"job-{i:04d}" for i in range(10)]
    wait_until(lambda: first.poll() or len(_lines(marks)) == 10, timeout=60, interval=0.2)
    second = Supervisor(cluster, "scheduler", name="second")  # a standby
    wait_until(lambda: "standby" in (cluster.tmp / "second.err").read_text(), timeout=30)
    # The leader's host dies (its runners live on) as the database goes away: the standby
    # takes over only once the database is back, and must not take the runs' silence during
    # the outage for their death.
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    _down_until(pg, lambda: _marks_done(marks, ids), second)
    wait_until(lambda: second.poll() or _all_final(cluster, "job", 10), timeout=60, interval=0.2)
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)
    _next_run_starts_within_20_s(cluster, marks, second)
    _assert_each_ran_once_and_succeeded(cluster, "job", marks)


def test_cli_verbs_wait_a_bounded_time_then_fail_in_one_line(
    outage: tuple[Cluster, PostgresServer],
) -> None:
    cluster, pg = outage
    cluster.write_dag("job", "steps:\n  - 'true'\n")
    env = {**cluster.env, "DAGU_DATABASE_WAIT_SECONDS": "2"}
    pg.stop()
    try:
        for verb in (("enqueue", "job"), ("stop", "job"), ("start", "job")):
            started = time.monotonic()
            code, _out, err = run_cli(*verb, env=env)
            waited = time.monotonic() - started
            assert code == 1, (verb, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            assert "the state database is unreachable" in err, err
            assert 1.0 <= waited < 20.0, (verb, waited)
    finally:
        pg.resume()
    assert cluster.runs("job") == []  # nothing half-written
    assert run_cli("enqueue", "job", env=env)[0] == 0  # and all is well once it is back
