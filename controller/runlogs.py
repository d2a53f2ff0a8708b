"""Where a run's log files live: `<log dir>/<safe DAG name>/<run id>/…`.

Owns the layout every writer and reader of run logs shares:

- `run_dir`: a run's directory (`runner.err` is there, and the logs of its first attempt);
  `attempt_dir`: the directory of one attempt (`attempt-N/` below it for a retry);
- the file names in it: `RUNNER_ERR` (the runner process's stderr), `RUN_LOG` (the run's
  own log), `output_files` (a step's `.out` and `.err`, or its merged `.log`);
- the directories a prepared runner makes ahead of its run (`<log dir>/.prepared/<pid>`):
  made by `make_logs_ahead`, renamed to the run's by `adopt_logs_ahead`, and swept by the
  loop when a killed runner left one (`sweep_logs_ahead`).

Callers: the applier and the workers (`controller.spawn.runner_process`: where a runner's
stderr goes; the applier's pruning), the engine (`controller.engine.launch`, the runner, the
prepared runners of `controller.engine.start`), the fork-server (`controller.spawn.server`) and
the control loop (the sweep). Imports nothing of the controller: every layer may use it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "LOGS_AHEAD_DIR",
    "RUNNER_ERR",
    "RUN_LOG",
    "adopt_logs_ahead",
    "attempt_dir",
    "make_logs_ahead",
    "output_files",
    "run_dir",
    "safe_dir",
    "safe_name",
    "sweep_logs_ahead",
]

RUNNER_ERR = "runner.err"  # the runner process's stderr, in `run_dir` (every attempt appends)
RUN_LOG = "run.log"  # the run's own log, in `attempt_dir`
# `<log dir>/.prepared/<pid>`: the log directory a prepared runner made before its run existed.
LOGS_AHEAD_DIR = ".prepared"

_UNSAFE_IN_STEP = re.compile(r"[^A-Za-z0-9_.-]")


# The two names are kept apart on purpose: a DAG directory keeps non-ASCII letters
# (`str.isalnum`) while a step's file name is ASCII only, and logs already on disk use both.
def safe_dir(name: str) -> str:
    """A DAG name as a directory name."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


def safe_name(name: str) -> str:
    """A step name usable as a file name."""
    return _UNSAFE_IN_STEP.sub("_", name) or "_"


def run_dir(log_root: Path, dag_name: str, run_id: str) -> Path:
    """The directory of run `run_id` of `dag_name` under the log directory `log_root`."""
    return log_root / safe_dir(dag_name) / run_id


def attempt_dir(log_root: Path, dag_name: str, run_id: str, attempt: int) -> Path:
    """The directory of attempt `attempt` (1 for the first) of a run: its `run_dir`, with
    `attempt-N/` below it for a retry."""
    base = run_dir(log_root, dag_name, run_id)
    return base / f"attempt-{attempt}" if attempt > 1 else base


def output_files(log_dir: Path, stem: str, *, merged: bool) -> tuple[Path, Path]:
    """The stdout and stderr files of a step (`stem` = its `safe_name`) or a handler: `.out`
    and `.err`, or for `logOutput: merged` one `.log` file for both, as Dagu 1.30.2 names
    them (its node records then give that file as both `stdout` and `stderr`)."""
    if merged:
        return log_dir / f"{stem}.log", log_dir / f"{stem}.log"
    return log_dir / f"{stem}.out", log_dir / f"{stem}.err"


def make_logs_ahead(log_root: Path, steps: Iterable[tuple[str, bool]]) -> Path | None:
    """Make, ahead of its run, a prepared runner's log directory with the files its run
    creates first (`runner.err`, `run.log`, the log files of each step, given as (name,
    merged)), as `<log_root>/.prepared/<pid>`; `adopt_logs_ahead` renames it to the run's
    directory at the launch. A directory and five new files cost a runner ~1.5 ms of kernel
    time, and fifty runners start at one minute boundary. None if it cannot be made (the run
    makes its own)."""
    ahead = log_root / LOGS_AHEAD_DIR / str(os.getpid())
    files = [ahead / RUNNER_ERR, ahead / RUN_LOG]
    for name, merged in steps:
        for path in output_files(ahead, safe_name(name), merged=merged):
            if path not in files:
                files.append(path)
    try:
        if ahead.exists():  # left by a killed process that had our pid
            shutil.rmtree(ahead)
        ahead.mkdir(parents=True)
        for path in files:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError:
        shutil.rmtree(ahead, ignore_errors=True)
        return None
    return ahead


def adopt_logs_ahead(ahead: Path, log_dir: Path) -> None:
    """Rename the directory `make_logs_ahead` made to the run's `log_dir`; if that fails (the
    run's directory exists already, another file system), remove it: the run then creates
    its files itself."""
    try:
        log_dir.parent.mkdir(parents=True, exist_ok=True)
        os.rename(ahead, log_dir)
    except OSError:
        shutil.rmtree(ahead, ignore_errors=True)


def sweep_logs_ahead(log_root: Path, *, older_than_seconds: float, now: float) -> int:
    """Remove prepared log directories older than `older_than_seconds` (a prepared runner
    lives seconds; one killed before its launch or expiry leaves its directory); how many."""
    removed = 0
    try:
        entries = list(os.scandir(log_root / LOGS_AHEAD_DIR))
    except OSError:
        return 0
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than_seconds:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed
