"""The desired state: what the DAG directory, the settings and the open requests ask for.

`DesiredBuilder.build(now)` turns the catalog (`controller.catalog`, refreshed by the loop on
watchdog events and periodically), the settings (global queues, zone) and the store's open
requests into a `reconcile.DesiredState`. It keeps one `schedule.TickCache` per DAG (dropped when
the DAG's file or base.yaml changes), so a pass over 1,000 DAGs runs croniter only for DAGs whose
next fire time has come, and it reuses each DAG's `DagDesired` (and the whole DAG map) while the
catalog generation is unchanged and nothing became due. `next_due_at()` tells the loop how long it
may sleep; `next_start_at()` and `starting_at()` which runners to prepare ahead of the next start
instant (`controller.spawn.server`); `missed_ticks()` lists the start ticks a stopped controller
missed (recorded once by the loop on start-up, see `controller.loop.controller`).

Callers: the control loop (`controller.loop.controller`) and `controller.reconcile.snapshot`
(the plan view's reads).

Decisions documented here:
- A DAG whose file is removed gets no new runs; a run of it that is already *running* finishes
  (its runner holds the spec snapshot); runs of it still *queued* are aborted by the reconciler
  ("DAG file removed"), because the runner starts from the file.
- An invalid file is reported; its running runs finish. Under `controller.onInvalidDag:
  keep-last-good` (the default) a file that loaded before keeps being scheduled with that last
  good version (the catalog keeps it; the runs record it as their snapshot, marked dirty), so a
  bad commit or edit never silently stops a schedule; under `stop`, and for a file that never
  loaded, the DAG gets no new runs.
- `catchupWindowSec: 0` (default) means Dagu's behaviour: only the current minute's tick is due
  (a tick counts as due for 60 s after its instant, so a controller started at 12:00:45 still
  fires the 12:00 tick). Larger windows make missed ticks within the window due, once each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from controller.catalog import Catalog, CatalogEntry
from controller.reconcile.rules import (
    DEFAULT_RETENTION_DAYS,
    DagDesired,
    DesiredState,
    InvalidFile,
    RequestView,
    StartTick,
)
from controller.revision import digest
from controller.schedule import CronSchedule, TickCache, due_ticks, parse_all
from controller.store.records import NotFound
from controller.store.store import Store
from model.config import Settings
from model.params import resolve_params

if TYPE_CHECKING:
    from model.loader import Dag

# A tick stays due this long after its instant when no catch-up window is set.
CURRENT_MINUTE = timedelta(seconds=60)


# Ticks missed while no controller ran are recorded at most this far back (enumerating a year
# of an every-minute schedule at start-up would block the loop for minutes).
MISSED_LOOKBACK = timedelta(days=1)


@dataclass
class _DagCache:
    """One DAG's schedules, fire-time memos and its last `DagDesired`, kept while the file
    (and base.yaml) is unchanged. The `DagDesired` is reused until `valid_until`: the next
    fire instant of any schedule, or the instant a tick in the window leaves it."""

    dag: Dag
    start: TickCache
    stop: TickCache
    restart: TickCache
    start_schedules: tuple[CronSchedule, ...]
    params: tuple[str, ...]
    desired: DagDesired | None = None
    built_at: datetime | None = None
    valid_until: datetime | None = None  # None (with `desired`): valid until the file changes

    def current(self, path: str, now: datetime) -> DagDesired:
        """The DAG's desired entry at `now`, rebuilt only when it may have changed."""
        if (
            self.desired is not None
            and self.built_at is not None
            and self.built_at <= now
            and (self.valid_until is None or now < self.valid_until)
        ):
            return self.desired
        dag = self.dag
        spec = dag.spec
        start = _ticks(self.start, now)
        stop = _ticks(self.stop, now)
        restart = _ticks(self.restart, now)
        self.desired = DagDesired(
            name=dag.name,
            file=path,
            queue=dag.queue,
            max_active_runs=spec.max_active_runs,
            hist_retention_days=spec.hist_retention_days,
            skip_if_successful=spec.skip_if_successful,
            overlap_policy=spec.overlap_policy,
            restart_wait_seconds=float(spec.restart_wait_sec),
            start_ticks=tuple(
                StartTick(
                    t, _previous(self.start_schedules, t) if spec.skip_if_successful else None
                )
                for t in start
            ),
            stop_ticks=stop,
            restart_ticks=restart,
            next_start_at=self.start.next_at,
            next_stop_at=self.stop.next_at,
            next_restart_at=self.restart.next_at,
            params=self.params,
        )
        ends = [
            *(c.next_at for c in (self.start, self.stop, self.restart) if c.next_at is not None),
            *(t + self.start.window for t in start),
            *(t + CURRENT_MINUTE for t in (*stop, *restart)),
        ]
        self.built_at = now
        self.valid_until = min(ends) if ends else None
        return self.desired


def _ticks(cache: TickCache, now: datetime) -> tuple[datetime, ...]:
    # A DAG without such a schedule (most have no stop/restart one) costs nothing.
    return tuple(cache.ticks(now)) if cache.schedules else ()


def tick_window(dag: Dag) -> timedelta:
    """How long after its instant a start tick of `dag` is still due."""
    return max(CURRENT_MINUTE, timedelta(seconds=dag.spec.catchup_window_sec))


def default_params(dag: Dag) -> tuple[str, ...]:
    """The DAG's default params as the store keeps them (`NAME=value`)."""
    return tuple(f"{k}={v}" for k, v in resolve_params(dag.spec.params, []))


def last_run_text(store: Store) -> Callable[[str], str | None]:
    """The catalog's `last_run_text` over `store`: the DAG text of a DAG's latest run (what a
    restarted controller keeps scheduling for a file that is invalid now)."""

    def lookup(name: str) -> str | None:
        try:
            return store.get_run(name, "latest").spec_yaml or None
        except NotFound:
            return None

    return lookup


@dataclass
class DesiredBuilder:
    """Builds `DesiredState` from a catalog; keeps per-DAG fire-time caches between passes.

    While the catalog's generation is unchanged and no DAG has a due tick (or a tick leaving
    its window), `build` reuses the previous pass's DAG map: an idle pass over 1,000 DAGs
    costs a few comparisons, not 1,000 `DagDesired` objects.
    """

    settings: Settings
    catalog: Catalog
    _caches: dict[str, _DagCache] = field(default_factory=dict)
    _generation: int = -1
    _valid: list[CatalogEntry] = field(default_factory=list)  # loaded, first of their name
    _invalid: tuple[InvalidFile, ...] = ()
    _dags: dict[str, DagDesired] | None = None
    _built_at: datetime | None = None
    _until: datetime | None = None  # the DAG map is valid until then (None: until a change)
    _next_due: datetime | None = None
    _next_start: datetime | None = None
    _retention: dict[str, int] = field(default_factory=dict)
    _max_window: float = CURRENT_MINUTE.total_seconds()

    def _cache(self, entry: CatalogEntry) -> _DagCache:
        dag = entry.usable
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

    def _index(self, generation: int) -> None:
        """Re-read the catalog's entries (only after it changed)."""
        valid: list[CatalogEntry] = []
        invalid: list[InvalidFile] = []
        names: dict[str, str] = {}
        seen: set[str] = set()
        for entry in self.catalog.entries():
            seen.add(entry.file_name)
            if entry.dag is None:
                last = entry.last_good  # kept only under onInvalidDag: keep-last-good
                invalid.append(
                    InvalidFile(
                        entry.file_name,
                        str(entry.path),
                        tuple(str(e) for e in entry.errors),
                        key=f"{entry.file_name}@{entry.stamp[0]}:{entry.stamp[1]}",
                        using=digest(last.source)[:19] if last is not None else "",
                        dag_name=last.name if last is not None else "",
                    )
                )
                if last is None:
                    continue
            dag = entry.usable
            assert dag is not None
            name = dag.name
            if name in names:
                invalid.append(
                    InvalidFile(
                        entry.file_name,
                        str(entry.path),
                        (f"DAG name {name!r} is also used by {names[name]}",),
                        key=f"{entry.file_name}@dup:{entry.stamp[0]}",
                    )
                )
                continue
            names[name] = str(entry.path)
            valid.append(entry)
        for gone in set(self._caches) - seen:
            del self._caches[gone]
        caches = [self._cache(e) for e in valid]
        self._valid = valid
        self._invalid = tuple(invalid)
        self._retention = {
            d.name: d.spec.hist_retention_days for e in valid if (d := e.usable) is not None
        }
        self._max_window = max(
            [CURRENT_MINUTE.total_seconds(), *(c.start.window.total_seconds() for c in caches)]
        )
        self._generation = generation
        self._dags = None

    def _dag_map(self, now: datetime) -> dict[str, DagDesired]:
        if (
            self._dags is not None
            and self._built_at is not None
            and self._built_at <= now
            and (self._until is None or now < self._until)
        ):
            return self._dags
        dags: dict[str, DagDesired] = {}
        ends: list[datetime] = []
        dues: list[datetime] = []
        starts: list[datetime] = []
        for entry in self._valid:
            c = self._cache(entry)
            d = c.current(str(entry.path), now)
            dags[d.name] = d
            if c.valid_until is not None:
                ends.append(c.valid_until)
            dues.extend(
                t for t in (c.start.next_at, c.stop.next_at, c.restart.next_at) if t is not None
            )
            if c.start.next_at is not None:
                starts.append(c.start.next_at)
        self._dags = dags
        self._built_at = now
        self._until = min(ends) if ends else None
        self._next_due = min(dues) if dues else None
        self._next_start = min(starts) if starts else None
        return dags

    def build(
        self,
        now: datetime,
        *,
        requests: Sequence[RequestView] = (),
        shutting_down: bool = False,
    ) -> DesiredState:
        """The desired state at `now` (the catalog must have been refreshed by the caller).

        The returned `dags` mapping may be shared with later passes: never mutate it."""
        generation = self.catalog.generation  # read before the entries: a race only re-reads
        if generation != self._generation:
            self._index(generation)
        dags = self._dag_map(now)
        queues = {q.name: q.max_active_runs for q in self.settings.queues}
        return DesiredState(
            dags=dags,
            invalid=self._invalid,
            requests=tuple(requests),
            global_queues=queues,
            default_retention_days=DEFAULT_RETENTION_DAYS,
            shutting_down=shutting_down,
        )

    def max_window_seconds(self) -> float:
        """How far back start ticks of any DAG stay due (60 s, or the largest catch-up window)."""
        return self._max_window

    def retention_days(self) -> dict[str, int]:
        """histRetentionDays of every valid DAG by name (the same object until the catalog
        changes: the observer compares it to decide whether to rescan retention)."""
        return self._retention

    def next_due_at(self) -> datetime | None:
        """The earliest next fire instant over every cached schedule (for the loop's sleep)."""
        return self._next_due

    def next_start_at(self) -> datetime | None:
        """The earliest next start instant of any DAG (as of the last `build`)."""
        return self._next_start

    def starting_at(self, at: datetime) -> list[CatalogEntry]:
        """The valid DAG files whose next start instant is `at` (as of the last `build`)."""
        return [
            e
            for e in self._valid
            if (c := self._caches.get(e.file_name)) is not None and c.start.next_at == at
        ]

    def look_ahead(self, at: datetime) -> None:
        """For the DAGs starting at `at`: find their next start after it now, ahead of the
        instant (`TickCache.look_ahead`)."""
        for c in self._caches.values():
            if c.start.next_at == at:
                c.start.look_ahead()

    def min_retention_days(self) -> int:
        """The smallest non-negative retention of any DAG (30 for removed DAGs included)."""
        days = [DEFAULT_RETENTION_DAYS]
        for c in self._caches.values():
            if c.dag.spec.hist_retention_days >= 0:
                days.append(c.dag.spec.hist_retention_days)
        return min(days)

    def missed_ticks(self, since: datetime, now: datetime) -> dict[str, list[datetime]]:
        """Start ticks that passed while no controller ran and can no longer be launched:
        instants in `(since, now - window]` of each valid DAG (its window: the current
        minute, or `catchupWindowSec`), at most `MISSED_LOOKBACK` back. The caller drops the
        ones that have a run row. Needs a `build` at `now` first."""
        out: dict[str, list[datetime]] = {}
        after = max(since, now - MISSED_LOOKBACK)
        for entry in self._valid:
            c = self._cache(entry)
            lower = now - c.start.window
            if not c.start_schedules or lower <= after:
                continue
            ticks = due_ticks(c.start_schedules, after=after, until=lower)
            if ticks and entry.usable is not None:
                out[entry.usable.name] = ticks
        return out


def _previous(schedules: Sequence[CronSchedule], at: datetime) -> datetime | None:
    found = [p for s in schedules if (p := s.previous_before(at)) is not None]
    return max(found) if found else None
