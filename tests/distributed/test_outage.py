"""PostgreSQL goes away under running runs (restart `-m immediate`, a stop of several
seconds): nothing is lost. Each test has the module's own server (`own_pg`), which it stops.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from controller import runlogs
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
    began = log.count("cannot write the state database")
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
