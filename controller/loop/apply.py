"""The applier: carries out the reconciler's actions. The only part of the loop that spawns
runners, signals them, and writes run state.

Each action is idempotent: inserting a scheduled run that exists already collides on the unique
index (`IntegrityError` = already done), a queued run is started only while still QUEUED (the
runner's claim is atomic, so a second runner for the same row exits 1), aborting a queued run is a
conditional update, reaping a lost run re-reads it, pruning skips active runs.

Runners are launched detached (their own session, stdin from /dev/null, stderr to
`runner.err` in the run's log directory) so that killing the controller — even with SIGKILL —
leaves them running; they record their own final status (`controller.spawn.runner_process`).
With a fork-server (`controller.spawn.client`, started by the loop) a launch is one request
line and the fork happens there, without waiting; without one, or when it is unavailable, the
runner is spawned as `python -m controller start -q --run-id ID FILE`. Shortly before a
start instant the loop has it prepare runners for the DAGs starting then (`prepare_runners`):
the fork-server hands each such launch to a runner that did its start-up work already.

Callers: `controller.loop.controller` only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import faults, runlogs
from controller.catalog import Catalog, CatalogEntry
from controller.liveness import NOT_CLAIMED_EXIT, on_this_host, reap_lost_run, runner_alive
from controller.reconcile.rules import (
    Action,
    CompleteRequest,
    Launch,
    MarkLost,
    Prune,
    RecordInvalid,
    SkipTick,
    StartQueued,
    Stop,
)
from controller.revision import revision_of
from controller.spawn.client import Dispatch, ForkServer
from controller.spawn.runner_process import runner_env, start_runner
from controller.store.records import NewRun, NotFound, RunRecord
from controller.store.store import Store
from model.config import Settings
from model.status import RunStatus

if TYPE_CHECKING:
    from model.loader import Dag

log = logging.getLogger("dagloop.controller")

STOP_FORK_WAIT_SECONDS = 2.0  # a stop waits this long for the pid of a runner being forked


@dataclass
class Applier:
    """Carries out actions against one store; remembers the runners it spawned."""

    store: Store
    settings: Settings
    catalog: Catalog
    clock: Callable[[], float]
    spawn_runners: bool = True  # False in tests of the applier without runners
    forkserver: ForkServer | None = None  # set by the loop; None: spawn with Popen
    dispatched: dict[int, subprocess.Popen[bytes] | Dispatch] = field(default_factory=dict)
    reported_invalid: set[str] = field(default_factory=set)
    missed_runs: Counter[str] = field(default_factory=Counter)  # dagloop_missed_runs_total
    _warmed: set[tuple[str, str]] = field(default_factory=set)  # (file, snapshot) sent to warm
    _warmed_generation: int = -1
    _warmed_base: bytes | None = None
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # ------------------------------------------------------------------ children

    def reap_children(self) -> None:
        """Collect exited runners (no zombies) and forget dispatches that are settled."""
        self._children = [p for p in self._children if p.poll() is None]
        for row, p in list(self.dispatched.items()):
            if isinstance(p, Dispatch) and p.abandoned:
                del self.dispatched[row]  # never forked: the next pass starts it again
            elif p.poll() is not None:
                try:
                    status = self.store.get_run_by_id(row).status
                except NotFound:
                    status = RunStatus.ABORTED
                if status != RunStatus.QUEUED or p.poll() == NOT_CLAIMED_EXIT:
                    # a runner that could not claim its run through a database outage: the
                    # run was not started, the next pass hands it out again
                    del self.dispatched[row]

    def probes(self) -> dict[int, Callable[[], bool]]:
        """Liveness probes of the runners this controller spawned, by run row."""
        return {row: _probe(p) for row, p in self.dispatched.items()}

    def running_children(self) -> list[subprocess.Popen[bytes] | Dispatch]:
        """Launched runners still running (spawned, or forked by the fork-server)."""
        forked = [
            d
            for d in self.dispatched.values()
            if isinstance(d, Dispatch) and d.pid is not None and d.poll() is None
        ]
        return [*(p for p in self._children if p.poll() is None), *forked]

    # ------------------------------------------------------------------ actions

    def apply(self, actions: Iterable[Action]) -> None:
        """Carry out every action; a failing action is logged and retried by a later pass.
        Consecutive launches are created in one commit, then each runner is started."""
        self._warm_runners()
        launches: list[Launch] = []
        try:
            for action in actions:
                if isinstance(action, Launch):
                    launches.append(action)
                    continue
                self._launch_all(launches)
                launches = []
                if not isinstance(action, StartQueued):
                    self._send_launches()  # slow actions (prune, reaping) must not delay them
                self._guarded(action, partial(self._one, action))
            self._launch_all(launches)
        finally:
            self._send_launches()

    def _guarded(self, action: Action, do: Callable[[], None]) -> None:
        """`do()` (carrying out `action`); a failure is logged, and a later pass retries."""
        try:
            do()
        except Exception as exc:  # transient by default: the next pass repeats the plan
            extra = {"dag": getattr(action, "dag_name", ""), "action": type(action).__name__}
            log.error("action failed", extra={**extra, "error": str(exc)})

    def _send_launches(self) -> None:
        """Hand the fork-server the launches buffered so far: a pass's rows are all created
        before any of its runners competes for the CPU and the database."""
        if self.forkserver is not None:
            self.forkserver.flush()

    def _one(self, action: Action) -> None:
        if isinstance(action, StartQueued):
            self._start(self.store.get_run_by_id(action.row), action.reason)
        elif isinstance(action, Stop):
            self._stop(action)
        elif isinstance(action, MarkLost):
            run = self.store.get_run_by_id(action.row)
            reason = action.reason.removeprefix("lost: ")
            reap_lost_run(self.store, run, reason)
            self.dispatched.pop(action.row, None)
            extra = {"dag": action.dag_name, "run_id": action.run_id, "reason": reason}
            log.warning("run lost", extra=extra)
        elif isinstance(action, Prune):
            self._prune(action)
        elif isinstance(action, SkipTick):
            if action.kind == "start":
                # Persisted once per (DAG, instant): a restarted controller deciding the same
                # tick again neither counts it twice nor loses it (dagloop_missed_runs_total).
                self.missed_runs[action.dag_name] += self.store.record_skipped_ticks(
                    action.dag_name, [action.at.timestamp()], reason=action.reason, now=self.clock()
                )
            at = action.at.isoformat()
            extra = {"dag": action.dag_name, "kind": action.kind, "at": at, "reason": action.reason}
            log.info("tick skipped", extra=extra)
        elif isinstance(action, RecordInvalid):
            self.reported_invalid.add(action.key)
            # the errors name the file and line themselves: the message stays a constant;
            # `reason` names the last good version when one is still scheduled
            problems = {"file": action.path, "errors": list(action.errors)}
            reason = action.reason.removeprefix("invalid DAG file: ")
            log.error(
                "invalid DAG file", extra={"dag": action.file_name, **problems, "reason": reason}
            )
        elif isinstance(action, CompleteRequest):
            self.store.record_request_done(action.request_id, action.result)

    def _warm_runners(self) -> None:
        """After a catalog change, have the fork-server fill the spec cache for the DAGs that
        changed, so their first runner does not import pydantic at the minute boundary."""
        if self.forkserver is None or self.catalog.generation == self._warmed_generation:
            return
        self._warmed_generation = self.catalog.generation
        try:
            base = self.settings.base_config.read_bytes()
        except OSError:
            base = None
        if base != self._warmed_base:
            self._warmed_base = base
            self._warmed.clear()  # every cache key depends on base.yaml
        items = [
            (str(e.path), e.dag.source)
            for e in self.catalog.entries()
            if e.dag is not None and (str(e.path), e.dag.source) not in self._warmed
        ]
        self._warmed.update(items)
        config = self.settings.config_file
        self.forkserver.warm(items, config_file=None if config is None else str(config))

    def prepare_runners(self, entries: Sequence[CatalogEntry], *, expire_seconds: float) -> None:
        """Have the fork-server fork, ahead of a start instant, a runner per DAG file in
        `entries` that sets itself up (settings, store, spec) and waits for its launch, so
        that only the claim and the first step are left for the minute boundary. Unused ones
        exit after `expire_seconds`; a launch without one forks as usual."""
        if self.forkserver is None or not self.spawn_runners:
            return
        items = [
            (str(e.path), e.dag.source)
            for e in entries
            if e.dag is not None and self._selector_of(e.dag) is None  # not a worker's
        ]
        config = self.settings.config_file
        self.forkserver.prepare(
            items,
            env=runner_env(self.settings),
            cwd=os.getcwd(),
            config_file=None if config is None else str(config),
            expire_seconds=expire_seconds,
        )

    def record_missed(self, dag_name: str, ticks: Sequence[datetime], *, reason: str) -> int:
        """Record start ticks that passed while no controller ran (`controller.loop.controller`
        on its first pass) as skipped, once each; returns how many were new (and counted)."""
        added = self.store.record_skipped_ticks(
            dag_name, [t.timestamp() for t in ticks], reason=reason, now=self.clock()
        )
        self.missed_runs[dag_name] += added
        if added:
            span = {"from": ticks[0].isoformat(), "to": ticks[-1].isoformat()}
            extra = {"dag": dag_name, "count": added, **span, "reason": reason}
            log.warning("ticks missed", extra=extra)
        return added

    def _launch_all(self, launches: Sequence[Launch]) -> None:
        """Create the runs of `launches` in one commit, then start those asked to start."""
        found = [(a, self.catalog.find_dag(a.dag_name)) for a in launches]
        # A DAG whose file went away since the plan gets nothing; the next pass decides again.
        # `usable`: a file that became invalid launches its last good version (keep-last-good)
        todo = [(a, e, e.usable) for a, e in found if e is not None and e.usable is not None]
        if not todo:
            return
        new = []
        for a, entry, dag in todo:
            rev = revision_of(entry.real_path or entry.path, dag.source)
            new.append(
                NewRun(
                    dag_name=dag.name,
                    run_id=a.run_id,
                    status=RunStatus.QUEUED,
                    file=str(entry.path),
                    spec_yaml=dag.source,
                    queue=dag.queue,
                    trigger=a.trigger,
                    params=a.params,
                    scheduled_at=a.scheduled_at.timestamp() if a.scheduled_at else None,
                    queued_at=a.not_before.timestamp() if a.not_before else None,
                    revision_commit=rev.commit,
                    revision_dirty=rev.dirty,
                )
            )
        try:
            runs = self.store.record_runs(new, now=self.clock())
        except Exception as exc:  # transient by default: the next pass repeats the plan
            extra = {"dag": todo[0][2].name, "action": "Launch", "error": str(exc)}
            log.error("action failed", extra=extra)
            return
        faults.point("apply.launch.recorded")  # test-only crash point (controller/faults.py)
        for (action, _, dag), run in zip(todo, runs, strict=True):
            if run is None:
                continue  # already launched (another pass or another controller): done
            if not action.start:
                extra = {"dag": dag.name, "run_id": run.run_id, "reason": action.reason}
                log.info("run created", extra=extra)
                continue
            self._guarded(action, partial(self._start, run, action.reason, created=True))
            # Every row exists already: each runner starts while the rest are requested
            # (sending them together left the second core idle for ~15 ms at a boundary).
            self._send_launches()

    def _start(self, run: RunRecord, reason: str, *, created: bool = False) -> None:
        """Start the runner of the queued `run` (or hand it to the workers); `created`: the
        run was created by this pass, which the one log line says too."""
        if run.status != RunStatus.QUEUED or run.id in self.dispatched:
            return
        facts: dict[str, Any] = {"dag": run.dag_name, "run_id": run.run_id}
        facts.update(new_run=created, reason=reason)
        selector = self._worker_selector(run)
        if selector is not None:
            if self.store.dispatch_run(run.id, selector=selector, now=self.clock()):
                log.info("run handed to the workers", extra={**facts, "labels": selector})
            return
        if not self.spawn_runners:
            if created:
                log.info("run created", extra=facts)
            return
        handle = start_runner(self.settings, self.forkserver, run, flush=False)
        self.dispatched[run.id] = handle
        if isinstance(handle, Dispatch):
            log.info("runner requested from the fork-server", extra=facts)
            return
        self._children.append(handle)
        log.info("runner started", extra={**facts, "pid": handle.pid})

    def _worker_selector(self, run: RunRecord) -> dict[str, str] | None:
        """The labels a worker needs to run `run`, or None when this controller runs it.

        Workers run it when `scheduler.dispatch` is `workers`, or when its DAG or one of its
        steps has a `workerSelector` (as Dagu does). One worker runs the whole run, so it
        needs the DAG's labels and every step's.
        """
        entry = self.catalog.find_dag(run.dag_name)
        return self._selector_of(None if entry is None else entry.usable)

    def _selector_of(self, dag: Dag | None) -> dict[str, str] | None:
        labels: dict[str, str] = {}
        if dag is not None:
            labels.update(dag.spec.worker_selector)
            for step in dag.spec.steps:
                labels.update(step.worker_selector)
        if labels or self.settings.dispatch == "workers":
            return labels
        return None

    def _stop(self, action: Stop) -> None:
        run = self.store.get_run_by_id(action.row)
        extra = {"dag": run.dag_name, "run_id": run.run_id}
        if run.status == RunStatus.QUEUED and run.id not in self.dispatched:
            if self.store.finish_queued_run(
                run.id, status=RunStatus.ABORTED, error=action.reason, now=self.clock()
            ):
                log.info("queued run aborted", extra={**extra, "reason": action.reason})
                return
            run = self.store.get_run_by_id(action.row)
        if run.status.is_final():
            return
        self.store.update_run(run.id, stop_requested_at=self.clock())
        pid = run.pid
        if pid is None and run.id in self.dispatched:
            handle = self.dispatched[run.id]
            if isinstance(handle, Dispatch):
                self._send_launches()
                # Requested a moment ago: the fork is a few ms away; without its pid the
                # runner would claim the row and clear the stop request.
                pid = handle.wait_forked(STOP_FORK_WAIT_SECONDS)
            else:
                pid = handle.pid
        if not on_this_host(run):
            pid = None  # its worker sees stop_requested_at and signals the runner there
        if pid is not None and (run.pid is None or runner_alive(run)):
            try:
                os.kill(pid, signal.SIGTERM)  # the runner stops its steps and escalates
            except ProcessLookupError:
                pass
        log.info("stop sent", extra={**extra, "reason": action.reason})

    def _prune(self, action: Prune) -> None:
        removed = 0
        for row in action.rows:
            try:
                deleted = self.store.prune_run_tree(row)
            except NotFound:
                continue
            for run in deleted:
                self._remove_logs(run)
            removed += len(deleted)
        if removed:
            extra = {"dag": action.dag_name, "count": removed, "reason": action.reason}
            log.info("runs pruned", extra=extra)

    def _remove_logs(self, run: RunRecord) -> None:
        root = self.settings.log_dir.resolve()
        candidates = [runlogs.run_dir(self.settings.log_dir, run.dag_name, run.run_id)]
        if run.log_file:
            candidates.append(Path(run.log_file).parent)
        for path in candidates:
            try:
                resolved = path.resolve()
            except OSError:
                continue
            # Never delete outside the log directory, nor a DAG's whole directory.
            if resolved == root or root not in resolved.parents:
                continue
            if resolved.parent == root:
                continue
            shutil.rmtree(resolved, ignore_errors=True)


def _probe(proc: subprocess.Popen[bytes] | Dispatch) -> Callable[[], bool]:
    return lambda: proc.poll() is None
