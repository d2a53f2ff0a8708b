"""The control loop: observe, plan, apply — on a doorbell, at the next due instant, and on a
periodic resync.

One pass (`Controller.pass_once`) rescans the DAG directory if a file event arrived (or the
safety-net rescan is due), builds the desired and observed states, calls the pure
`reconcile.plan`, and applies the actions. Between passes the loop sleeps until the earliest of:
a doorbell (watchdog file event, the wake file touched by `enqueue`/`dequeue`, SIGCHLD of a
runner it spawned, a signal), the next cron instant of any DAG (cached per DAG, not recomputed),
or the resync interval (`controller.resyncIntervalSeconds`) — there is no per-second polling.
It also wakes `PREPARE_LEAD_SECONDS` before the next start instant to have the fork-server
prepare the runners of the DAGs starting then (`Applier.prepare_runners`), so that at the
instant a launch only hands a run id to a runner already set up.

Exclusivity: one controller acts per state database (`controller.cluster.leader`): an exclusive
`flock` on `<data_dir>/controller.lock` for SQLite, a PostgreSQL session-level advisory lock for
several hosts. A second instance is a standby that tries the lock every 0.25 s, so it takes over
within ~0.5 s of the leader's death (the kernel or the server drops the lock with the process).
A leader whose PostgreSQL session was lost stops acting before its next pass and exits 3.

Shutdown (SIGTERM/SIGINT): stop launching; let the runs this controller manages (runs that went
through the queue, i.e. not foreground `dagloop start` runs) finish for up to
`controller.shutdownGraceSeconds`; then SIGTERM their runners (which stop their steps with
`signalOnStop` and escalate to SIGKILL); runs still not final a few seconds later have their
processes killed and are recorded aborted "controller shutdown". Then release the lock, exit 0.
Queued runs stay queued for the next controller.

Missed ticks: every pass records its instant (`meta['controller.last_pass_at']`, at most every
resync interval); the first pass of a new leader records as skipped, once each, the start ticks
between that instant and now that fell out of their window without a run (a controller down over
ticks and no `catchupWindowSec` covering them), so they show in `dagloop_missed_runs_total`.

Time: every decision takes `now` from the injected `clock`; only the sleeps use real time.
systemd: READY/WATCHDOG/STOPPING through `controller.loop.sdnotify` (the unit is `Type=notify` with
`WatchdogSec=`); a pass pings the watchdog, and the sleep between passes is capped at half the
watchdog period, so a hung or stopped loop is restarted by systemd.

Callers: `dagloop scheduler`, `dagloop start-all` (both through `run_controller`, which checks
the database first), and in-process tests.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from controller import runlogs
from controller.catalog import Catalog, catalog_for
from controller.cluster.leader import LOCK_FILE, leadership_for
from controller.doorbell import Doorbell
from controller.gitsync.sync import GitSync
from controller.ids import new_run_id
from controller.liveness import reap_lost_run
from controller.loop.apply import Applier
from controller.loop.sdnotify import Notifier
from controller.loop.watcher import Watcher
from controller.outage import Outage
from controller.reconcile.desired import DesiredBuilder, last_run_text
from controller.reconcile.observed import PruneCache, default_liveness
from controller.reconcile.rules import (
    Action,
    MarkLost,
    TickKey,
    tick_of,
)
from controller.reconcile.snapshot import Snapshot, take_snapshot
from controller.spawn.client import ForkServer
from controller.spawn.runner_process import runner_env
from controller.store.records import StoreError, StoreUnavailable
from controller.store.retry import open_store
from controller.store.store import Store
from model.config import Settings
from model.status import RunStatus

log = logging.getLogger("dagloop.controller")

RESCAN_SECONDS = 30.0  # safety-net rescan of the DAG directory when no event arrived
STANDBY_POLL_SECONDS = 0.25
SHUTDOWN_STOP_SECONDS = 8.0  # after SIGTERM to runners: their cleanup (5 s default) + margin

# meta key: the injected clock's instant of the leader's latest pass (missed ticks on restart)
LAST_PASS_KEY = "controller.last_pass_at"
SKIPPED_TICKS_KEEP = timedelta(days=30)  # rows of skipped ticks kept (their totals stay)
HOUSEKEEPING_SECONDS = 3600.0
LOGS_AHEAD_KEEP_SECONDS = 600.0  # a prepared runner lives seconds: older log dirs are leftovers
# Runners of the DAGs due at the next start instant are forked and set up this long before it
# (the fork-server's prepared runners, controller.spawn.server), and close unused this long
# after it.
PREPARE_LEAD_SECONDS = 2.0
EVENT_PASS_INTERVAL_SECONDS = 0.05  # passes woken by events are at least this far apart
PREPARE_EXPIRE_AFTER_SECONDS = 10.0


class Controller:
    """The control loop of one DAGU_HOME."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        spawn_runners: bool = True,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store if store is not None else open_store(settings, role="controller")
        self.catalog = catalog or catalog_for(settings)
        self.catalog.last_run_text = last_run_text(self.store)
        self.builder = DesiredBuilder(settings, self.catalog)
        self.applier = Applier(
            self.store, settings, self.catalog, clock, spawn_runners=spawn_runners
        )
        self.bell = Doorbell()
        self.notifier = Notifier()
        # When this controller last took the lead or reached its database again after an
        # outage: heartbeat gaps before it are not held against runs (`liveness.beat_fresh`).
        self.grace_from = 0.0
        self.outage = Outage()  # this loop's view of its database (log lines, grace)
        self.liveness = default_liveness(
            settings.heartbeat_timeout_seconds, lambda: self.grace_from
        )
        self.decided: dict[TickKey, datetime] = {}
        self.prune_cache = PruneCache()
        self._missed_checked = False  # missed ticks of the downtime before our first pass
        self._last_pass_written: float | None = None
        self._housekeeping_at: float | None = None
        self._prepared_for: datetime | None = None  # start instant runners were prepared for
        self.shutting_down = False
        self.stop_requested = False
        self._last_rescan = float("-inf")
        self.leadership = leadership_for(settings)
        self.lost_leadership = False
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{new_run_id(time.time())[-6:]}"
        self._started_at = time.time()
        self.gitsync = GitSync(settings, clock=clock) if settings.gitsync_enabled else None
        self._sync_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one pass

    def now(self) -> datetime:
        """The injected clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def refresh_catalog(self, *, force: bool = False) -> None:
        """Rescan the DAG directory if an event asked for it or the safety net is due."""
        mono = time.monotonic()
        if force or self.bell.catalog_dirty or mono - self._last_rescan >= RESCAN_SECONDS:
            self.bell.catalog_dirty = False
            self._last_rescan = mono
            self.catalog.refresh()

    def snapshot(self) -> Snapshot:
        """Observe and plan at the clock's `now`, changing nothing (what the plan view does,
        plus what only this loop knows: its runners, its decided ticks, its reports)."""
        return take_snapshot(
            self.store,
            self.builder,
            now=self.now(),
            liveness=self.liveness,
            worker_timeout_seconds=self.settings.heartbeat_timeout_seconds,
            dispatched=self.applier.probes(),
            decided=frozenset(self.decided),
            reported_invalid=frozenset(self.applier.reported_invalid),
            prune_cache=self.prune_cache,
            shutting_down=self.shutting_down,
            grace_from=self.grace_from,
        )

    def pass_once(self) -> list[Action]:
        """One reconcile pass: observe, plan, apply. Returns the actions applied."""
        self.applier.reap_children()
        self._sync_git()
        self.refresh_catalog()
        snap = self.snapshot()
        if any(isinstance(a, MarkLost) for a in snap.actions) and self._writes_stalled():
            snap = self.snapshot()  # with the grace the stall gave every run
        self.applier.apply(snap.actions)
        self._prepare_runners(snap.now)
        for action in snap.actions:
            key = tick_of(action)
            if key is not None:
                self.decided[key] = snap.now
        horizon = snap.now - timedelta(days=2)
        if self.decided:
            self.decided = {k: v for k, v in self.decided.items() if k[2] > horizon}
        if not self._missed_checked:
            self._record_missed(snap.now)
        self._record_pass(snap.now)
        return snap.actions

    def _sync_git(self) -> None:
        """Start a git sync when one is due (git_sync), in its own thread: a slow or hanging
        remote must not hold up the passes that launch scheduled runs. It rings the doorbell
        (catalog dirty) when done. The checkouts that active runs started from are kept."""
        sync = self.gitsync
        if sync is None or (self._sync_thread is not None and self._sync_thread.is_alive()):
            return
        if not sync.due(self.clock()):
            return
        in_use = {r.revision_commit for r in self.store.list_active_runs()}

        def work() -> None:
            try:
                sync.sync(in_use=in_use)
            finally:
                self.bell.ring(catalog=True)

        self._sync_thread = threading.Thread(target=work, name="gitsync", daemon=True)
        self._sync_thread.start()

    def _writes_stalled(self) -> bool:
        """Before declaring a run lost for a missing heartbeat: can this controller write
        promptly itself? One write (its instance row) is timed; one that waited a heartbeat
        interval or more (another process held SQLite's lock, PostgreSQL stalled) means the
        runners' beats were held up as well, so every run gets one full heartbeat timeout
        from now (`grace_from`), and True. A refused write raises `StoreUnavailable` (the
        pass is an outage's)."""
        started = time.monotonic()
        self._write_instance("active")
        waited = time.monotonic() - started
        if waited < self.settings.heartbeat_interval_seconds:
            return False
        self.grace_from = time.time()
        log.warning(
            "a database write waited %.1f s: no run is declared lost before a heartbeat "
            "timeout from now",
            waited,
        )
        return True

    def _prepare_runners(self, now: datetime) -> None:
        """Within `PREPARE_LEAD_SECONDS` of the next start instant, once per instant: have
        runners for the DAGs starting then set up ahead (`Applier.prepare_runners`)."""
        at = self.builder.next_start_at()
        if self.shutting_down or at is None or at == self._prepared_for:
            return
        lead = (at - now).total_seconds()
        if lead > PREPARE_LEAD_SECONDS:
            return
        self._prepared_for = at
        self.applier.prepare_runners(
            self.builder.starting_at(at), expire_seconds=lead + PREPARE_EXPIRE_AFTER_SECONDS
        )
        self.builder.look_ahead(at)

    def _record_missed(self, now: datetime) -> None:
        """Once, on the first pass: record as skipped the start ticks that passed since the
        last recorded pass of any leader and fell out of their window unlaunched (a controller
        down over ticks without `catchupWindowSec`). Idempotent: rows are unique per tick."""
        raw = self.store.get_meta(LAST_PASS_KEY)
        if raw is not None:
            since = datetime.fromtimestamp(float(raw), UTC)
            missed = self.builder.missed_ticks(since, now)
            if missed:
                launched = set(self.store.list_scheduled_runs(since=since.timestamp()))
                why = f"controller not running since {since.isoformat()} (outside the window)"
                for name, ticks in sorted(missed.items()):
                    left = [t for t in ticks if (name, t.timestamp()) not in launched]
                    if left:
                        self.applier.record_missed(name, left, reason=why)
        self._missed_checked = True

    def _record_pass(self, now: datetime) -> None:
        """Remember the instant of this pass (at most every resync interval of the injected
        clock), and now and then drop old skipped-tick rows."""
        t = now.timestamp()
        last = self._last_pass_written
        if last is None or t < last or t - last >= self.settings.resync_interval_seconds:
            self.store.set_meta(LAST_PASS_KEY, repr(t))
            self._last_pass_written = t
        mono = time.monotonic()
        if self._housekeeping_at is None or mono - self._housekeeping_at >= HOUSEKEEPING_SECONDS:
            self._housekeeping_at = mono
            self.store.prune_skipped_ticks(before=t - SKIPPED_TICKS_KEEP.total_seconds())
            runlogs.sweep_logs_ahead(
                self.settings.log_dir, older_than_seconds=LOGS_AHEAD_KEEP_SECONDS, now=time.time()
            )

    # ------------------------------------------------------------------ lock

    def try_lock(self) -> bool:
        """Take the exclusive controller lock (`controller.cluster.leader`) without waiting."""
        return self.leadership.try_acquire()

    def release_lock(self) -> None:
        """Release the controller lock."""
        self.leadership.release()

    def _write_instance(self, status: str) -> None:
        self.store.record_instance(
            id=self.instance_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            status=status,
            started_at=self._started_at,
            now=time.time(),
        )

    def _record_instance(self, status: str) -> None:
        try:
            self._write_instance(status)
        except StoreUnavailable:
            pass  # an outage is logged once, by the pass
        except Exception as exc:  # the registry is informative; never stop the loop for it
            log.warning("cannot record the controller instance", extra={"error": str(exc)})

    # ------------------------------------------------------------------ run

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        self.bell.ring()

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        self.bell.ring()

    def run_forever(self) -> int:
        """Wait for the lock (standby), then loop until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        self._record_instance("standby")
        # READY as soon as the loop runs, standby included: systemd's start must not time out
        # while another controller leads.
        self.notifier.ready("standby")
        standby_logged = False
        last_beat = time.monotonic()
        while not self.try_lock():
            if not standby_logged:
                lock = self.leadership.describe()
                log.info("another controller leads; waiting as standby", extra={"lock": lock})
                standby_logged = True
            if self.stop_requested:
                self.notifier.stopping("stopped as standby")
                self._record_instance("stopped")
                return 0
            self.notifier.watchdog()
            self.bell.wait(STANDBY_POLL_SECONDS)
            if time.monotonic() - last_beat > self.settings.resync_interval_seconds:
                self._record_instance("standby")
                last_beat = time.monotonic()
        signal.signal(signal.SIGCHLD, self._on_child)
        self.grace_from = time.time()  # runs beat to the previous leader, or to nobody
        log.info("controller active", extra={"dags_dir": str(self.settings.dags_dir)})
        if self.applier.spawn_runners and self.applier.forkserver is None:
            # Runners are forked from a warm helper (controller/spawn/server.py); its answers
            # (a runner exited) ring the doorbell as SIGCHLD does for spawned runners.
            self.applier.forkserver = ForkServer(runner_env(self.settings), on_exit=self.bell.ring)
            try:
                self.applier.forkserver.start()
            except OSError as exc:  # launches fall back to spawning; the next one retries
                log.warning("cannot start the fork-server", extra={"error": str(exc)})
        self._record_instance("active")
        try:
            self.store.record_leader(self.instance_id, now=time.time())
        except Exception as exc:  # informative only, as _record_instance
            log.warning("cannot record the leader", extra={"error": str(exc)})
        self.notifier.status("active")
        watcher = Watcher(
            self.bell,
            dags_dir=self.settings.dags_dir,
            base_config=self.settings.base_config,
            data_dir=self.settings.data_dir,
        )
        watcher.start()
        if self.settings.database_url:  # runs queued or finished on other hosts ring too
            from controller.store.pg import listen

            listen(
                self.settings.database_url,
                "dagloop_wake",
                self.bell.ring,
                lambda: self.stop_requested or self.lost_leadership,
            )
        try:
            self.refresh_catalog(force=True)
            while not self.stop_requested:
                if not self.leadership.still_held():
                    # Another controller may lead already: act no more. Runs go on under their
                    # runners; a supervisor restart brings this one back as a standby.
                    lock = self.leadership.describe()
                    log.error("lost the leadership; stopping without acting", extra={"lock": lock})
                    self.lost_leadership = True
                    break
                self._guarded_pass()
                # A pass that returned (even with an error) proves the loop is not hung.
                self.notifier.watchdog()
                if time.monotonic() - last_beat >= self.settings.resync_interval_seconds:
                    self._record_instance("active")
                    last_beat = time.monotonic()
                passed = time.monotonic()
                if self.bell.wait(self._sleep_seconds()):
                    self._settle_events(passed)
            if not self.lost_leadership:
                self._shutdown_quietly()
        finally:
            watcher.stop()
            if self.applier.forkserver is not None:
                self.applier.forkserver.close()  # its runners keep running
                self.applier.forkserver = None
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._record_instance("stopped")
            self.release_lock()
        if self.lost_leadership:
            return 3
        log.info("controller stopped")
        return 0

    def _guarded_pass(self) -> None:
        """`pass_once`, riding out a database outage: one log line when it starts and one
        when it ends (never one per pass), its seconds counted for /metrics, and from its
        end one full heartbeat timeout of grace for every run (`liveness.beat_fresh`)."""
        try:
            self.pass_once()
        except StoreUnavailable as exc:
            if self.outage.failed(time.monotonic()):
                log.error("database unavailable, waiting for it (runs go on): %s", exc)
            return
        except Exception as exc:  # a transient failure (locked db...): retry next pass
            log.error("reconcile pass failed: %s", exc)
            return
        length = self.outage.recovered(time.monotonic())
        if length is not None:
            self.grace_from = time.time()
            log.info("database reachable again after %.1f s", length)

    def _settle_events(self, passed: float) -> None:
        """After a ring, let a burst of events arrive before the next pass: at most one pass
        per `EVENT_PASS_INTERVAL_SECONDS` for events (fifty runners ending at one minute
        boundary rang fifty times, and each pass took CPU from the runners still starting),
        never past a due instant. `passed`: when the last pass ended (monotonic)."""
        pause = min(passed + EVENT_PASS_INTERVAL_SECONDS - time.monotonic(), self._sleep_seconds())
        if pause > 0 and not self.stop_requested:
            time.sleep(pause)

    def _sleep_seconds(self) -> float:
        timeout = self.settings.resync_interval_seconds
        due = self.builder.next_due_at()
        if due is not None:
            timeout = min(timeout, (due - self.now()).total_seconds())
        start = self.builder.next_start_at()
        if start is not None and start != self._prepared_for:  # wake to prepare its runners
            until = (start - self.now()).total_seconds() - PREPARE_LEAD_SECONDS
            if until > 0:  # else a pass in the lead failed: no retrying it in a tight loop
                timeout = min(timeout, until)
        sync_at = self.gitsync.next_at() if self.gitsync is not None else None
        if sync_at is not None:
            timeout = min(timeout, sync_at - self.clock())
        if self.notifier.watchdog_seconds is not None:
            timeout = min(timeout, self.notifier.watchdog_seconds / 2)
        return max(timeout, 0.0)

    # ------------------------------------------------------------------ shutdown

    def _managed_running(self) -> list[int]:
        return [
            r.id
            for r in self.store.list_active_runs()
            if r.status in (RunStatus.RUNNING, RunStatus.WAITING)
            and r.queued_at is not None
            and not r.parent_run_id
            and not r.worker_id  # a worker's runs are its own to stop (controller.cluster.worker)
        ]

    def _shutdown_quietly(self) -> None:
        """`shutdown`; with the database away, the runs are left to their runners (they
        record their own ends), with one line instead of a traceback."""
        try:
            self.shutdown()
        except StoreUnavailable as exc:
            log.error("database unavailable at shutdown; runs go on under their runners: %s", exc)

    def shutdown(self) -> None:
        """Graceful stop: no launches, wait up to the grace, stop runners, record leftovers."""
        self.shutting_down = True
        self.notifier.stopping("shutting down")
        grace = self.settings.shutdown_grace_seconds
        log.info("shutting down: waiting for runs", extra={"grace_seconds": grace})
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self._managed_running() and time.monotonic() < deadline:
            try:
                self.pass_once()  # still marks lost runs and reaps children, launches nothing
            except Exception as exc:
                log.error("reconcile pass failed", extra={"error": str(exc)})
            self.notifier.watchdog()
            self.bell.wait(min(0.2, max(deadline - time.monotonic(), 0.0)))
        remaining = self._managed_running()
        if not remaining:
            return
        stopped_at = self.clock()
        for row in remaining:
            run = self.store.get_run_by_id(row)
            self.store.update_run(row, stop_requested_at=stopped_at)
            if run.pid is not None and self.liveness(run):
                try:
                    os.kill(run.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + SHUTDOWN_STOP_SECONDS
        while time.monotonic() < deadline and any(
            self.store.get_run_by_id(r).status.is_active() for r in remaining
        ):
            self.applier.reap_children()
            self.notifier.watchdog()
            self.bell.wait(0.1)
        for row in remaining:
            run = self.store.get_run_by_id(row)
            if run.status.is_active():
                if run.pid is not None and self.liveness(run):
                    try:
                        os.kill(run.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                reap_lost_run(self.store, run, "controller shutdown")
            elif run.status != RunStatus.ABORTED:
                continue  # it finished on its own during the stop
            self.store.update_run(
                row,
                status=RunStatus.ABORTED,
                error="controller shutdown",
                finished_at=self.store.get_run_by_id(row).finished_at or self.clock(),
            )
        self.applier.reap_children()


def run_controller(settings: Settings) -> int:
    """Open and check the store, then run the loop until SIGTERM/SIGINT; the exit code.

    A database that cannot be opened or fails `PRAGMA integrity_check` stops the controller
    before it does anything (exit 2, one clear line): acting on a torn store could relaunch or
    lose runs. Callers: `dagloop scheduler`, `dagloop start-all`.
    """

    def waiting(exc: StoreUnavailable) -> None:
        log.error("database unavailable, waiting for it before starting: %s", exc)

    try:
        # A supervisor restarts a leader that lost its session (exit 3): while the database
        # is still away, wait for it here rather than exit and be restarted in a hot loop.
        store = open_store(settings, role="controller", forever=True, on_wait=waiting)
        problems = store.check_integrity()
    except (StoreError, OSError) as exc:
        log.error("cannot start", extra={"db": str(settings.db_path), "error": str(exc)})
        return 2
    except sqlite3.DatabaseError as exc:
        error = f"the state database is damaged: {exc}"
        log.error("cannot start", extra={"db": str(settings.db_path), "error": error})
        return 2
    if problems:
        error = "fails PRAGMA integrity_check: " + "; ".join(problems[:5])
        error += " …" if len(problems) > 5 else ""
        hint = "restore it from a backup, or move it away to start with an empty history"
        log.error("cannot start", extra={"db": str(settings.db_path), "error": error, "hint": hint})
        store.close()
        return 2
    return Controller(settings, store=store).run_forever()


def lock_path(settings: Settings) -> Path:
    """The controller lock file of a DAGU_HOME."""
    return settings.data_dir / LOCK_FILE
