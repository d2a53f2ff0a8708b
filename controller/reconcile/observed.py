"""The observed state: runs as the store records them, plus whether their runners live.

`observe(...)` reads the store (active runs, latest run per DAG, scheduled instants and recorded
skipped ticks within the window, retention candidates — rescanned only on change, `PruneCache`)
and checks liveness (`controller.liveness.runner_alive`: pid and process start time, or a fresh
heartbeat) into a `reconcile.ObservedState`. A run that looks dead
is re-read before it is reported lost, so a runner that recorded its final status and exited a
moment ago is never mistaken for a lost one.

Callers: the control loop and `controller.reconcile.snapshot` (the plan view's reads). Reads
only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.liveness import beat_fresh, runner_alive
from controller.reconcile.rules import ObservedState, RunView, TickKey
from controller.store.records import NotFound, RunRecord
from controller.store.store import Store
from model.status import RunStatus

Liveness = Callable[[RunRecord], bool]


def _dt(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def run_view(run: RunRecord, *, alive: bool | None = None) -> RunView:
    """A store row as the planner sees it."""
    return RunView(
        id=run.id,
        dag_name=run.dag_name,
        run_id=run.run_id,
        status=run.status,
        trigger=run.trigger,
        queue=run.queue,
        params=tuple(run.params),
        scheduled_at=_dt(run.scheduled_at),
        created_at=_dt(run.created_at),
        queued_at=_dt(run.queued_at),
        started_at=_dt(run.started_at),
        finished_at=_dt(run.finished_at),
        alive=alive,
    )


def default_liveness(
    heartbeat_timeout_seconds: float, grace_from: Callable[[], float] = lambda: 0.0
) -> Liveness:
    """`liveness.runner_alive`, plus a grace for a run claimed a moment ago whose runner has
    not recorded its pid yet (no pid, no heartbeat, but the row was written just now).
    `grace_from()`: when the observer last (re)gained leadership or reached its database
    again; heartbeats are not held against a runner before a full timeout from then."""

    def alive(run: RunRecord) -> bool:
        since = grace_from()
        if runner_alive(run, heartbeat_timeout_seconds=heartbeat_timeout_seconds, grace_from=since):
            return True
        if run.pid is None and run.heartbeat_at is None:
            return time.time() - max(run.updated_at, since) < heartbeat_timeout_seconds
        return False

    return alive


@dataclass
class PruneCache:
    """The last retention scan, reused while nothing it depends on changed.

    Rescans when a run finished since (the newest `finished_at` moved), the DAGs' retention
    changed, the last scan found something (the next batch), the injected clock went back, or
    `rescan_seconds` of it passed (runs age into retention). Kept by the loop across passes.
    """

    rescan_seconds: float = 60.0
    _at: datetime | None = None
    _key: tuple[object, ...] = ()
    _retention: Mapping[str, int] | None = None
    _result: tuple[RunView, ...] = ()

    def prunable(
        self,
        store: Store,
        now: datetime,
        retention: Mapping[str, int],
        default_days: int,
        limit: int,
    ) -> tuple[RunView, ...]:
        """Finished runs that may be due for retention (see `_prunable`)."""
        key = (store.max_finished_at(), default_days, limit)
        same_retention = retention is self._retention or retention == self._retention
        if (
            self._at is not None
            and not self._result
            and key == self._key
            and same_retention
            and self._at <= now
            and (now - self._at).total_seconds() < self.rescan_seconds
        ):
            return ()
        self._result = _prunable(store, now.timestamp(), retention, default_days, limit)
        self._at, self._key, self._retention = now, key, retention
        return self._result


def observe(
    store: Store,
    *,
    now: datetime,
    window_seconds: float,
    dag_names: Iterable[str],
    liveness: Liveness,
    dispatched: Mapping[int, Callable[[], bool]] | None = None,
    decided: frozenset[TickKey] = frozenset(),
    reported_invalid: frozenset[str] = frozenset(),
    retention_days: Mapping[str, int] | None = None,
    default_retention_days: int = 30,
    prune_limit: int = 200,
    prune_cache: PruneCache | None = None,
    worker_timeout_seconds: float = 10.0,
    grace_from: float = 0.0,
) -> ObservedState:
    """Read the world. `dispatched` maps run rows whose runner this controller spawned to a
    callable telling whether that process still lives; `retention_days` (DAG name ->
    histRetentionDays of every known DAG; other DAGs get `default_retention_days`) bounds the
    retention scan: one indexed query per distinct retention, oldest first; with `prune_cache`
    the scan is repeated only when something changed. Start ticks recorded as skipped (by any
    controller) within the window count as decided. A queued run handed to the workers holds
    its slot while it waits for a worker and while its worker beats (within
    `worker_timeout_seconds`, counted from `grace_from` at the earliest: see
    `liveness.beat_fresh`); when its worker died before starting it, it is "not started"
    again (alive None), so the plan hands it out once more."""
    dispatched = dispatched or {}
    active: list[RunView] = []
    runs = store.list_active_runs()
    beats: dict[str, float] = {}
    if any(r.worker_id for r in runs):
        beats = {w.id: w.heartbeat_at for w in store.list_workers() if w.status == "active"}
    for run in runs:
        alive: bool | None
        if run.status == RunStatus.QUEUED:
            probe = dispatched.get(run.id)
            if probe is not None:
                alive = probe()
            elif run.dispatched_at is not None:
                fresh = beat_fresh(
                    beats.get(run.worker_id),
                    now=time.time(),
                    timeout_seconds=worker_timeout_seconds,
                    grace_from=grace_from,
                )
                alive = True if not run.worker_id or fresh else None
            else:
                alive = None
        else:
            probe = dispatched.get(run.id)
            # Our child's exit status only counts until the runner recorded its pid; from then
            # on liveness (pid, start time, heartbeat) decides, so a stopped or hung child of
            # ours is not kept alive by the probe (issue 8 #31).
            alive = liveness(run) or (probe is not None and run.pid is None and probe())
        if alive is False:
            try:
                again = store.get_run_by_id(run.id)
            except NotFound:
                continue
            if again.status != run.status:
                continue  # it finished (or was claimed) in the meantime
            if again.status != RunStatus.QUEUED and liveness(again):
                alive = True  # its pid was recorded in the meantime
                run = again
        if run.parent_run_id and alive is not False:
            continue  # sub-runs belong to their parent's runner; only a dead one concerns us
        active.append(run_view(run, alive=alive))
    names = sorted(set(dag_names) | {r.dag_name for r in active})
    latest = {name: run_view(r) for name, r in store.latest_runs(names).items()}
    since = now.timestamp() - window_seconds
    scheduled = frozenset(
        (dag, datetime.fromtimestamp(at, UTC)) for dag, at in store.list_scheduled_runs(since=since)
    )
    retention = retention_days or {}
    if prune_cache is not None:
        prunable = prune_cache.prunable(store, now, retention, default_retention_days, prune_limit)
    else:
        prunable = _prunable(store, now.timestamp(), retention, default_retention_days, prune_limit)
    skipped = store.list_skipped_ticks(since=since)
    if skipped:
        decided = decided | {
            (dag, "start", datetime.fromtimestamp(at, UTC)) for dag, at, _ in skipped
        }
    return ObservedState(
        active=tuple(active),
        latest=latest,
        scheduled=scheduled,
        decided=decided,
        prunable=prunable,
        reported_invalid=reported_invalid,
    )


def _prunable(
    store: Store, now: float, retention: Mapping[str, int], default_days: int, limit: int
) -> tuple[RunView, ...]:
    groups: dict[int, list[str]] = {}
    for name, days in retention.items():
        if days >= 0:
            groups.setdefault(days, []).append(name)
    out: list[RunRecord] = []
    for days, names in sorted(groups.items()):
        out += store.list_finished_runs(
            before=now - days * 86400.0, limit=limit, dag_names=sorted(names)
        )
    if default_days >= 0:
        out += store.list_finished_runs(
            before=now - default_days * 86400.0, limit=limit, exclude_dag_names=sorted(retention)
        )
    return tuple(run_view(r) for r in out)
