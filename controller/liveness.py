"""Is a run's runner still alive, and reaping the runs whose runner is gone.

`runner_alive` trusts the recorded pid only together with its start time (PIDs get reused)
and, for runners on other hosts, the heartbeat. `reap_lost_run` kills what the dead runner
left (its recorded step groups and any process still carrying the run's `DAG_RUN_ID`), applies
the writes it kept in its local journal during a database outage, and records the run failed
with error ``lost: <reason>`` unless the journal held its end.

Called by `dagloop status/stop/retry/start`, and by the control loop's applier.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from controller import runjournal
from controller.process import kill_run_processes, pid_alive, proc_start_ticks
from controller.store.records import RunRecord
from controller.store.store import Store
from model.status import RunStatus, StepStatus

__all__ = [
    "NOT_CLAIMED_EXIT",
    "beat_fresh",
    "heartbeat_age",
    "on_this_host",
    "reap_lost_run",
    "runner_alive",
    "runner_process_alive",
]

# The exit code of a runner that could not claim its queued run because the database stayed
# away longer than `database.waitSeconds` (sysexits' EX_TEMPFAIL): the run was not started,
# so whoever launched the runner hands the run out again instead of recording it failed.
NOT_CLAIMED_EXIT = 75

_DEFAULT_TIMEOUT_SECONDS = 10.0


def heartbeat_age(run: RunRecord, *, now: float | None = None) -> float | None:
    """Seconds since the last heartbeat (None if never)."""
    if run.heartbeat_at is None:
        return None
    return (time.time() if now is None else now) - run.heartbeat_at


def on_this_host(run: RunRecord) -> bool:
    """Whether the run's runner was started on this host (or has not recorded a host yet):
    only then are its pid and process groups ours to probe and signal."""
    return not run.host or run.host == os.uname().nodename


def beat_fresh(
    beat_at: float | None, *, now: float, timeout_seconds: float, grace_from: float = 0.0
) -> bool:
    """Whether a heartbeat recorded at `beat_at` still counts, `timeout_seconds` after it —
    or after `grace_from`, when later: the instant the observer (re)gained leadership or
    reached its database again. A gap in the beats that falls inside the observer's own
    outage is no evidence of death (the runners could not write either), so every run gets
    one full timeout from then. No beat at all is not fresh."""
    if beat_at is None:
        return False
    return now - max(beat_at, grace_from) < timeout_seconds


def runner_alive(
    run: RunRecord,
    *,
    heartbeat_timeout_seconds: float = _DEFAULT_TIMEOUT_SECONDS,
    grace_from: float = 0.0,
) -> bool:
    """Whether the runner process of `run` is still there.

    On this host: the pid exists, has the recorded start time, and its heartbeat (when one
    was recorded) is fresher than `heartbeat_timeout_seconds` — a runner that exists but no
    longer beats (stopped, hung) counts as gone, so a stuck run cannot hold its DAG's slot
    for ever (issue 8 #31); `reap_lost_run` then kills it. On another host (or with no pid
    recorded): the heartbeat alone decides. With `grace_from` (`beat_fresh`), the timeout
    counts from then at the earliest; a runner whose pid is gone is lost at once all the same.
    """
    fresh = beat_fresh(
        run.heartbeat_at,
        now=time.time(),
        timeout_seconds=heartbeat_timeout_seconds,
        grace_from=grace_from,
    )
    if run.pid is not None and on_this_host(run):
        if not _same_process(run):
            return False
        return run.heartbeat_at is None or fresh
    return fresh


def runner_process_alive(run: RunRecord) -> bool:
    """Whether the runner of `run` is a live process of this host (its pid, with the recorded
    start time), whatever its heartbeat says: a runner the database held up (an outage, a
    loaded machine) is still there, and a signal reaches it."""
    return on_this_host(run) and _same_process(run)


def _same_process(run: RunRecord) -> bool:
    """The recorded runner pid is alive and is still that process (not a reused pid)."""
    if run.pid is None or not pid_alive(run.pid):
        return False
    return run.pid_started is None or proc_start_ticks(run.pid) == run.pid_started


def _apply_journal(store: Store, run: RunRecord) -> RunRecord | None:
    """Apply the writes a dead runner kept in its local journal (`controller.runjournal`)
    when the database refused them, if its log directory is readable here; the run as it
    then reads, or None when there was no journal."""
    if not run.log_file:
        return None
    path = runjournal.journal_path(Path(run.log_file).parent)
    writes = runjournal.read(path)
    if not writes:
        return None
    store.record_run_writes(run.id, writes)
    runjournal.remove(path)
    return store.get_run_by_id(run.id)


def reap_lost_run(store: Store, run: RunRecord, reason: str) -> RunRecord:
    """Kill the leftovers of a run whose runner is gone and record it failed ("lost: …").

    A runner process that still exists (it stopped heartbeating) is killed first. Running
    steps become failed. Safe to repeat: a run already final is returned unchanged.
    """
    current = store.get_run_by_id(run.id)
    if current.status.is_final():
        return current
    local = on_this_host(current)
    if local and current.pid_started is not None and _same_process(current):
        # A runner that exists but stopped beating (SIGSTOP, hang): it would resume and write
        # over the final status, so it goes first.
        try:
            os.kill(current.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass
    replayed = _apply_journal(store, current)
    if replayed is not None and replayed.status.is_final():
        return replayed  # the runner recorded its end in its journal before it died
    steps = store.list_steps(run.id)
    if local:  # process groups of another host are not ours to signal (its host is gone)
        pgids = [s.pgid for s in steps if s.pgid]
        kill_run_processes(run.dag_name, run.run_id, pgids, grace_seconds=0.0)
    now = time.time()
    for s in steps:
        if s.status in (StepStatus.RUNNING, StepStatus.WAITING):
            store.update_step(
                s.id,
                status=StepStatus.FAILED,
                finished_at=now,
                error=f"lost: {reason}",
                pgid=None,
            )
    store.update_run(run.id, status=RunStatus.FAILED, finished_at=now, error=f"lost: {reason}")
    return store.get_run_by_id(run.id)
