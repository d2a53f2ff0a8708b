"""The run log layout (`controller.runlogs`): where a run's files go, and the directories a
prepared runner makes ahead of its run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from controller import runlogs


def test_a_run_keeps_its_logs_under_the_dag_and_run_id(tmp_path: Path) -> None:
    assert runlogs.run_dir(tmp_path, "nightly", "r1") == tmp_path / "nightly" / "r1"
    assert runlogs.attempt_dir(tmp_path, "nightly", "r1", 1) == tmp_path / "nightly" / "r1"
    assert runlogs.attempt_dir(tmp_path, "nightly", "r1", 3) == (
        tmp_path / "nightly" / "r1" / "attempt-3"
    )


def test_dag_directories_keep_letters_and_step_files_are_ascii() -> None:
    # Both shapes are on disk already: a DAG directory keeps non-ASCII letters, a step's file
    # name does not.
    assert runlogs.safe_dir("ünï/code d") == "ünï_code_d"
    assert runlogs.safe_name("ünï/code d") == "_n__code_d"
    assert runlogs.safe_dir("") == runlogs.safe_name("") == "_"
    assert runlogs.safe_name("a.b-c_d") == "a.b-c_d"


def test_prepared_logs_hold_the_first_files_and_are_adopted_by_the_run(tmp_path: Path) -> None:
    ahead = runlogs.make_logs_ahead(tmp_path, [("say hi", False), ("both", True)])
    assert ahead == tmp_path / ".prepared" / str(os.getpid())
    names = {p.name for p in ahead.iterdir()}
    assert names == {"runner.err", "run.log", "say_hi.out", "say_hi.err", "both.log"}
    run_dir = runlogs.run_dir(tmp_path, "d", "r1")
    runlogs.adopt_logs_ahead(ahead, run_dir)
    assert {p.name for p in run_dir.iterdir()} == names
    assert not ahead.exists()


def test_a_merged_step_has_one_log_file_for_both_streams(tmp_path: Path) -> None:
    # Dagu 1.30.2 with logOutput: merged writes `<step>.log` and records it as both files.
    assert runlogs.output_files(tmp_path, "s", merged=True) == (tmp_path / "s.log",) * 2
    assert runlogs.output_files(tmp_path, "s", merged=False) == (
        tmp_path / "s.out",
        tmp_path / "s.err",
    )


def test_prepared_logs_are_dropped_when_the_run_has_a_directory(tmp_path: Path) -> None:
    run_dir = runlogs.run_dir(tmp_path, "d", "r1")
    (run_dir / "kept").mkdir(parents=True)
    ahead = runlogs.make_logs_ahead(tmp_path, [])
    assert ahead is not None
    runlogs.adopt_logs_ahead(ahead, run_dir)
    assert not ahead.exists()
    assert [p.name for p in run_dir.iterdir()] == ["kept"]


def test_logs_made_ahead_by_killed_runners_are_swept_when_old(tmp_path: Path) -> None:
    ahead = tmp_path / ".prepared"
    old, fresh = ahead / "101", ahead / "102"
    for d in (old, fresh):
        d.mkdir(parents=True)
        (d / "run.log").touch()
    os.utime(old, (time.time() - 700, time.time() - 700))
    assert runlogs.sweep_logs_ahead(tmp_path, older_than_seconds=600, now=time.time()) == 1
    assert [p.name for p in ahead.iterdir()] == ["102"]
    assert runlogs.sweep_logs_ahead(tmp_path / "none", older_than_seconds=0, now=0) == 0
