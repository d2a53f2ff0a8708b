"""The desired state: what the DAG directory, the settings and the open requests ask for.

`DesiredBuilder.build(now)` turns the catalog (`controller.catalog`, refreshed by the loop on
watchdog events and periodically), the settings (global queues, zone) and the store's open
requests into a `reconcile.DesiredState`. It keeps one `schedule.TickCache` per DAG (dropped when
the DAG's file or base.yaml changes), so a pass over 1,000 DAGs runs croniter only for DAGs whose
next fire time has come. `next_due_at()` tells the loop how long it may sleep.

Callers: the control loop (`controller.loop`) and `dagloop plan`.

Decisions documented here:
- A DAG whose file is removed gets no new runs; a run of it that is already *running* finishes
  (its runner holds the spec snapshot); runs of it still *queued* are aborted by the reconciler
  ("DAG file removed"), because the runner starts from the file.
- An invalid file is excluded (no new runs) and reported; its running runs finish.
- `catchupWindowSec: 0` (default) means Dagu's behaviour: only the current minute's tick is due
  (a tick counts as due for 60 s after its instant, so a controller started at 12:00:45 still
  fires the 12:00 tick). Larger windows make missed ticks within the window due, once each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.catalog import Catalog, CatalogEntry
from controller.reconcile import (
    DEFAULT_RETENTION_DAYS,
    DagDesired,
    DesiredState,
    InvalidFile,
    RequestView,
    StartTick,
)
from controller.schedule import CronSchedule, TickCache, parse_all
from model.config import Settings
from model.loader import Dag, resolve_params

# A tick stays due this long after its instant when no catch-up window is set.
CURRENT_MINUTE = timedelta(seconds=60)


@dataclass
class _DagCache:
    dag: Dag
    start: TickCache
    stop: TickCache
    restart: TickCache
    start_schedules: tuple[CronSchedule, ...]
    params: tuple[str, ...]


def tick_window(dag: Dag) -> timedelta:
    """How long after its instant a start tick of `dag` is still due."""
    return max(CURRENT_MINUTE, timedelta(seconds=dag.spec.catchup_window_sec))


def default_params(dag: Dag) -> tuple[str, ...]:
    """The DAG's default params as the store keeps them (`NAME=value`)."""
    return tuple(f"{k}={v}" for k, v in resolve_params(dag.spec.params, []))


@dataclass
class DesiredBuilder:
    """Builds `DesiredState` from a catalog; keeps per-DAG fire-time caches between passes."""

    settings: Settings
    catalog: Catalog
    _caches: dict[str, _DagCache] = field(default_factory=dict)

    def _cache(self, entry: CatalogEntry) -> _DagCache:
        dag = entry.dag
        assert dag is not None
        cached = self._caches.get(entry.file_name)
        if cached is not None and cached.dag is dag:
            return cached
        zone = self.settings.tz
        sched = dag.spec.schedule
        start = parse_all(sched.start, default_zone=zone)
        cached = _DagCache(
            dag=dag,
            start=TickCache(start, tick_window(dag)),
            stop=TickCache(parse_all(sched.stop, default_zone=zone), CURRENT_MINUTE),
            restart=TickCache(parse_all(sched.restart, default_zone=zone), CURRENT_MINUTE),
            start_schedules=start,
            params=default_params(dag),
        )
        self._caches[entry.file_name] = cached
        return cached

    def build(
        self,
        now: datetime,
        *,
        requests: Sequence[RequestView] = (),
        shutting_down: bool = False,
    ) -> DesiredState:
        """The desired state at `now` (the catalog must have been refreshed by the caller)."""
        dags: dict[str, DagDesired] = {}
        invalid: list[InvalidFile] = []
        seen: set[str] = set()
        for entry in self.catalog.entries():
            seen.add(entry.file_name)
            if entry.dag is None:
                invalid.append(
                    InvalidFile(
                        entry.file_name,
                        str(entry.path),
                        tuple(str(e) for e in entry.errors),
                        key=f"{entry.file_name}@{entry.stamp[0]}:{entry.stamp[1]}",
                    )
                )
                continue
            dag = entry.dag
            if dag.name in dags:
                invalid.append(
                    InvalidFile(
                        entry.file_name,
                        str(entry.path),
                        (f"DAG name {dag.name!r} is also used by {dags[dag.name].file}",),
                        key=f"{entry.file_name}@dup:{entry.stamp[0]}",
                    )
                )
                continue
            c = self._cache(entry)
            start_ticks = tuple(
                StartTick(
                    t, _previous(c.start_schedules, t) if dag.spec.skip_if_successful else None
                )
                for t in c.start.ticks(now)
            )
            spec = dag.spec
            dags[dag.name] = DagDesired(
                name=dag.name,
                file=str(entry.path),
                queue=dag.queue,
                max_active_runs=spec.max_active_runs,
                hist_retention_days=spec.hist_retention_days,
                skip_if_successful=spec.skip_if_successful,
                overlap_policy=spec.overlap_policy,
                start_ticks=start_ticks,
                stop_ticks=tuple(c.stop.ticks(now)),
                restart_ticks=tuple(c.restart.ticks(now)),
                next_start_at=c.start.next_at,
                next_stop_at=c.stop.next_at,
                next_restart_at=c.restart.next_at,
                params=c.params,
            )
        for gone in set(self._caches) - seen:
            del self._caches[gone]
        queues = {q.name: q.max_active_runs for q in self.settings.queues}
        return DesiredState(
            dags=dags,
            invalid=tuple(invalid),
            requests=tuple(requests),
            global_queues=queues,
            default_retention_days=DEFAULT_RETENTION_DAYS,
            shutting_down=shutting_down,
        )

    def max_window_seconds(self) -> float:
        """How far back start ticks of any DAG stay due (60 s, or the largest catch-up window)."""
        return max(
            [
                CURRENT_MINUTE.total_seconds(),
                *(c.start.window.total_seconds() for c in self._caches.values()),
            ]
        )

    def next_due_at(self) -> datetime | None:
        """The earliest next fire instant over every cached schedule (for the loop's sleep)."""
        found = [
            t
            for c in self._caches.values()
            for t in (c.start.next_at, c.stop.next_at, c.restart.next_at)
            if t is not None
        ]
        return min(found) if found else None

    def min_retention_days(self) -> int:
        """The smallest non-negative retention of any DAG (30 for removed DAGs included)."""
        days = [DEFAULT_RETENTION_DAYS]
        for c in self._caches.values():
            if c.dag.spec.hist_retention_days >= 0:
                days.append(c.dag.spec.hist_retention_days)
        return min(days)


def _previous(schedules: Sequence[CronSchedule], at: datetime) -> datetime | None:
    found = [p for s in schedules if (p := s.previous_before(at)) is not None]
    return max(found) if found else None
