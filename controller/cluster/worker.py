"""`dagloop worker`: run the runs the leader hands out, on this host.

The leader decides *whether* a run starts (queues, `maxActiveRuns`, FIFO) and marks it
dispatched (`controller.loop.apply`); workers decide only *where*: each claims dispatched runs whose
`workerSelector` its labels satisfy (`Store.claim_dispatched_runs`, `FOR UPDATE SKIP LOCKED` on
PostgreSQL), up to its `--max-active-runs`, and starts one runner per run — the same
`dagloop start --run-id` process the controller starts, detached in its own session, so a worker
that dies (or restarts) does not take its runs with it. The runner records its host, pid and
heartbeat as everywhere; the leader detects a lost runner by that heartbeat.

One pass (`Worker.pass_once`): reap runners that ended (shipping their logs into the database
when it is PostgreSQL, so that any host's API can serve them), beat the worker's heartbeat,
forward stop requests to local runners (the leader cannot signal another host), then claim.
Between passes it sleeps until a runner exits, a dispatch notification arrives (PostgreSQL
LISTEN), or `POLL_SECONDS` pass.

SIGTERM/SIGINT: stop claiming, give back claimed runs no runner started, let runners finish for
up to `controller.shutdownGraceSeconds`, then SIGTERM them (they stop their steps), exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from controller import runlogs
from controller.doorbell import Doorbell
from controller.liveness import NOT_CLAIMED_EXIT
from controller.outage import Outage
from controller.spawn.client import Dispatch, ForkServer
from controller.spawn.runner_process import runner_env, start_runner
from controller.store.records import RunRecord, StoreUnavailable
from controller.store.retry import open_store
from controller.store.store import Store
from model.config import Settings
from model.status import RunStatus

log = logging.getLogger("dagloop.worker")

POLL_SECONDS = 0.5  # claim again at least this often (a notification wakes it sooner)
SHIP_LOG_BYTES = 4 * 1024 * 1024  # tail of each log file copied into the database


def parse_labels(value: object) -> dict[str, str]:
    """Worker labels from `k=v,k2=v2` (CLI, environment) or a map (config file).

    Raises ValueError naming the bad item."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    labels: dict[str, str] = {}
    for item in str(value).split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError(f"worker label {item.strip()!r}: expected key=value")
        labels[key.strip()] = val.strip()
    return labels


@dataclass
class Worker:
    """One worker process: claims dispatched runs and supervises their runners."""

    settings: Settings
    worker_id: str
    labels: dict[str, str]
    max_active_runs: int
    store: Store = field(init=False)
    # run row -> its runner (forked by the fork-server, or spawned when that is unavailable)
    children: dict[int, tuple[subprocess.Popen[bytes] | Dispatch, RunRecord]] = field(
        default_factory=dict
    )
    forkserver: ForkServer | None = None
    bell: Doorbell = field(default_factory=Doorbell)
    stop_requested: bool = False
    _signalled: set[int] = field(default_factory=set)
    outage: Outage = field(default_factory=Outage)  # this worker's view of its database
    _started_at: float = field(default_factory=time.time)
    _beat_at: float = 0.0

    def __post_init__(self) -> None:
        def waiting(exc: StoreUnavailable) -> None:
            log.error("database unavailable, waiting for it before starting: %s", exc)

        self.store = open_store(self.settings, role="worker", forever=True, on_wait=waiting)

    # ------------------------------------------------------------------ one pass

    def pass_once(self) -> None:
        """Reap, beat, forward stops, claim."""
        self.reap()
        now = time.time()
        if now - self._beat_at >= self.settings.heartbeat_interval_seconds:
            self._register("active", now)
        self.forward_stops()
        if not self.stop_requested:
            self.claim()

    def claim(self) -> None:
        """Claim what fits and start a runner for each claimed run."""
        free = self.max_active_runs - len(self.children)
        if free <= 0:
            return
        for run in self.store.claim_dispatched_runs(
            worker_id=self.worker_id, labels=self.labels, limit=free, now=time.time()
        ):
            self._spawn(run)

    def _spawn(self, run: RunRecord) -> None:
        handle = start_runner(self.settings, self.forkserver, run)
        self.children[run.id] = (handle, run)
        log.info(
            "runner started on this worker",
            extra={"dag": run.dag_name, "run_id": run.run_id, "worker": self.worker_id},
        )

    def reap(self) -> None:
        """Collect runners that exited; a run still queued after its runner exited (the DAG
        file missing on this host, a crash before the claim) is recorded failed, with the
        reason, rather than handed around for ever."""
        for row, (proc, run) in list(self.children.items()):
            if isinstance(proc, Dispatch) and proc.abandoned:
                del self.children[row]
                self._spawn(run)  # the request died with the fork-server: send it again
                continue
            if proc.poll() is None:
                continue
            # read before letting go of it: during an outage the read fails and the next
            # pass comes back to this runner
            current = self.store.get_run_by_id(row)
            del self.children[row]
            self._signalled.discard(row)
            mine = current.status == RunStatus.QUEUED and current.worker_id == self.worker_id
            if mine and proc.poll() == NOT_CLAIMED_EXIT:
                self._spawn(run)  # it could not claim the run through an outage: again
                continue
            if mine:
                err_dir = runlogs.run_dir(self.settings.log_dir, run.dag_name, run.run_id)
                err = err_dir / runlogs.RUNNER_ERR
                self.store.finish_queued_run(
                    row,
                    status=RunStatus.FAILED,
                    error=f"worker {self.worker_id}: the runner exited ({proc.returncode}) "
                    f"before starting the run; see {err}",
                    now=time.time(),
                )
                current = self.store.get_run_by_id(row)
            if self.store.dialect == "postgresql":
                self.ship_logs(current)

    def ship_logs(self, run: RunRecord) -> None:
        """Copy the run's log files (run log, each step's stdout and stderr; the tail of a
        large one) into the database, keyed by their path on this host."""
        paths = [run.log_file] if run.log_file else []
        for step in self.store.list_steps(run.id):
            # a merged step (`logOutput: merged`) records its one `.log` as both: copied once
            paths += [p for p in dict.fromkeys((step.stdout, step.stderr)) if p]
        now = time.time()
        for path in paths:
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    cut = max(0, size - SHIP_LOG_BYTES)
                    f.seek(cut)
                    content = f.read()
            except OSError:
                continue
            try:
                self.store.record_log_blob(run.id, path, content, truncated=cut, now=now)
            except Exception as exc:  # a log copy is a convenience; the run's record stands
                log.warning("cannot ship a log", extra={"path": str(path), "error": str(exc)})

    def forward_stops(self) -> None:
        """SIGTERM local runners whose run has a stop request (`dagloop stop`, stop schedule,
        leader shutdown); the runner stops its steps and records the run aborted."""
        for row, (proc, _run) in self.children.items():
            if row in self._signalled:
                continue
            try:
                current = self.store.get_run_by_id(row)
            except LookupError:
                continue
            if current.stop_requested_at is not None and current.status.is_active():
                self._signalled.add(row)
                _signal(proc, signal.SIGTERM)

    def _register(self, status: str, now: float) -> None:
        try:
            self.store.record_worker(
                id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                labels=self.labels,
                max_active_runs=self.max_active_runs,
                status=status,
                started_at=self._started_at,
                now=now,
            )
            self._beat_at = now
        except StoreUnavailable:
            pass  # the outage is logged once by the pass; the next pass beats again
        except Exception as exc:
            log.warning("cannot record the worker heartbeat", extra={"error": str(exc)})

    # ------------------------------------------------------------------ process

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        self.bell.ring()

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        self.bell.ring()

    def run_forever(self) -> int:
        """Claim and supervise until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, self._on_child)
        self._register("active", time.time())
        facts = {"worker": self.worker_id, "labels": self.labels, "max_runs": self.max_active_runs}
        log.info("worker active", extra=facts)
        self.forkserver = ForkServer(runner_env(self.settings), on_exit=self.bell.ring)
        try:
            self.forkserver.start()
        except OSError as exc:  # launches spawn instead; the next launch retries the server
            log.warning("cannot start the fork-server", extra={"error": str(exc)})
        if self.settings.database_url:
            from controller.store.pg import listen

            listen(
                self.settings.database_url,
                "dagloop_dispatch",
                self.bell.ring,
                lambda: self.stop_requested,
            )
        while not self.stop_requested:
            self._guarded_pass()
            self.bell.wait(POLL_SECONDS)
        try:
            self.shutdown()
        except StoreUnavailable as exc:
            log.error("database unavailable at shutdown; runs go on under their runners: %s", exc)
        return 0

    def _guarded_pass(self) -> None:
        """`pass_once`, riding out a database outage: its runners go on, one log line when
        it starts and one when it ends (never one per pass)."""
        try:
            self.pass_once()
        except StoreUnavailable as exc:
            if self.outage.failed(time.monotonic()):
                log.error("database unavailable, waiting for it (runs go on): %s", exc)
            return
        except Exception as exc:  # a transient failure: retry next pass
            log.error("worker pass failed: %s", exc)
            return
        length = self.outage.recovered(time.monotonic())
        if length is not None:
            log.info("database reachable again after %.1f s", length)

    def shutdown(self) -> None:
        """Stop claiming; give claims back; wait for runners up to the grace; then stop them."""
        log.info("worker stopping", extra={"worker": self.worker_id})
        try:
            self.store.release_worker_claims(self.worker_id, now=time.time())
        except Exception as exc:
            log.warning("cannot give back claimed runs", extra={"error": str(exc)})
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self.children and time.monotonic() < deadline:
            self.reap()
            self.bell.wait(0.2)
        for proc, _run in self.children.values():
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while self.children and time.monotonic() < deadline:
            self.reap()
            self.bell.wait(0.1)
        if self.forkserver is not None:
            self.forkserver.close()  # runners still running keep running
        self._register("stopped", time.time())
        self.store.close()
        log.info("worker stopped", extra={"worker": self.worker_id})


def _signal(proc: subprocess.Popen[bytes] | Dispatch, sig: int) -> None:
    """Send `sig` to a runner (a forked one once its pid is known)."""
    pid = proc.pid if isinstance(proc, subprocess.Popen) else proc.wait_forked(1.0)
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def default_worker_id() -> str:
    """Dagu's default: `<host>@<pid>`."""
    return f"{socket.gethostname()}@{os.getpid()}"


def worker_from(settings: Settings, **overrides: Any) -> Worker:
    """A worker from the settings (`worker.*`), with CLI values in `overrides` winning."""
    labels = overrides.get("labels")
    max_active = overrides.get("max_active_runs")
    return Worker(
        settings,
        worker_id=overrides.get("worker_id") or settings.worker_id or default_worker_id(),
        labels=parse_labels(settings.worker_labels if labels is None else labels),
        max_active_runs=int(
            max_active if max_active is not None else settings.worker_max_active_runs
        ),
    )


__all__ = ["Worker", "default_worker_id", "parse_labels", "worker_from"]
