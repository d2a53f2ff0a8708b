"""Prometheus metrics of `/api/v2/metrics`, read from the store and the catalog at scrape time.

Names are the seed's (`dagu_*`); types are honest: current state is a gauge (the seed's
`dagu_dag_runs_queued_total` and `dagu_dags_total` keep their `_total` names although they are
gauges), `dagu_dag_runs_total{status}` is a real counter of finished runs by final status, read
from the store's `run_totals` table, which triggers keep up to date and which pruning of run
history does not touch (so `increase(dagu_dag_runs_total[24h])` works). A run that is retried
counts once per time it finishes. `dagu_dag_run_duration_seconds{dag}` is a histogram of the
same finished runs (Dagu's buckets). Process and Python platform/GC collectors are added too.
`dagloop_missed_runs_total{dag}` counts start ticks that did not run (overlap, skipIfSuccessful,
superseded, controller down), from the store's `skipped_totals`, whichever process recorded them.
Every app gets its own registries. Built by `api.app.create_app`.

The per-DAG counter and histogram are most of the text (13 samples per DAG: 13,000 lines for
1,000 DAGs, ~200 ms to collect and format). `Exposition` renders them into a separate cached
text that is kept until `run_totals` changes (a run finished: its trigger updates the table); the
small gauges (uptime, running, queued...) and the process metrics are rendered on every scrape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from api.errors import Unavailable
from api.state import ApiContext, scheduler_status
from controller.store.records import DURATION_BUCKETS_SECONDS, StoreError
from model import __version__
from model.status import RunStatus

FINAL_STATUSES = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.ABORTED,
    RunStatus.PARTIALLY_SUCCEEDED,
    RunStatus.REJECTED,
)


class DaguCollector(Collector):
    """The `dagu_*` metrics, computed from the store and catalog on each scrape."""

    def __init__(
        self, ctx: ApiContext, scheduler_running: Callable[[], bool] | None = None
    ) -> None:
        self.ctx = ctx
        self.scheduler_running = scheduler_running

    def _scheduler_running(self) -> bool:
        if self.scheduler_running is not None:
            return self.scheduler_running()
        return any(
            scheduler_status(self.ctx, i.status, i.heartbeat_at) == "active"
            for i in self.ctx.stores.get().list_instances()
        )

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        store = self.ctx.stores.get()
        info = GaugeMetricFamily("dagu_info", "Build information", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "dagu_uptime_seconds",
            "Seconds since the server started",
            value=max(0.0, self.ctx.clock() - self.ctx.started_at),
        )
        yield GaugeMetricFamily(
            "dagu_scheduler_running",
            "1 when a controller (scheduler) is running",
            value=1 if self._scheduler_running() else 0,
        )
        yield GaugeMetricFamily(
            "dagu_dags_total",
            "DAG files in the DAGs directory (a gauge; the name is Dagu's)",
            value=len(self.ctx.catalog.entries()),
        )
        current = store.count_runs_by_status([RunStatus.RUNNING, RunStatus.QUEUED])
        yield GaugeMetricFamily(
            "dagu_dag_runs_currently_running",
            "Runs now running",
            value=current[RunStatus.RUNNING],
        )
        yield GaugeMetricFamily(
            "dagu_dag_runs_queued_total",
            "Runs now queued (a gauge; the name is Dagu's)",
            value=current[RunStatus.QUEUED],
        )
        missed = CounterMetricFamily(
            "dagloop_missed_runs",
            "Scheduled start ticks that did not run (overlap, skipIfSuccessful, controller down)",
            labels=["dag"],
        )
        for dag, count in sorted(store.skipped_totals().items()):
            missed.add_metric([dag], count)
        yield missed
        leader = GaugeMetricFamily(
            "dagloop_scheduler_leader",
            "1 for the controller instance that leads (plans and acts) now",
            labels=["instance", "host"],
        )
        for inst in store.list_instances():
            if scheduler_status(self.ctx, inst.status, inst.heartbeat_at) == "active":
                leader.add_metric([inst.id, inst.host], 1)
        yield leader
        timeout = self.ctx.settings.heartbeat_timeout_seconds
        yield GaugeMetricFamily(
            "dagloop_workers_active",
            "Workers (`dagloop worker`) whose heartbeat is fresh",
            value=sum(
                1
                for w in store.list_workers()
                if w.status == "active" and self.ctx.clock() - w.heartbeat_at <= timeout
            ),
        )
        invalid = GaugeMetricFamily(
            "dagloop_dag_invalid",
            "1 for a DAG whose file does not load (its last good version may still be scheduled)",
            labels=["dag"],
        )
        for entry in self.ctx.catalog.entries():
            if entry.errors:
                invalid.add_metric([entry.name], 1)
        yield invalid
        yield CounterMetricFamily(
            "dagloop_disk_full",
            "Runs that failed because a disk (logs or state) was full",
            value=store.list_error_totals().get("disk_full", 0),
        )


class OutageCollector(Collector):
    """`dagloop_store_unavailable_seconds_total` (seconds this process could not read its
    database, the current outage included) and `dagloop_store_available` (1 or 0)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        """Yield the counter and the gauge."""
        outage = self.ctx.outage
        yield CounterMetricFamily(
            "dagloop_store_unavailable_seconds",
            "Seconds this process could not reach its state database",
            value=outage.total_seconds(time.monotonic()),
        )
        yield GaugeMetricFamily(
            "dagloop_store_available",
            "Whether this process reached its state database at its last try",
            value=0 if outage.since is not None else 1,
        )


class RunHistoryCollector(Collector):
    """`dagu_dag_runs_total{status}` and `dagu_dag_run_duration_seconds{dag}` from the store's
    `run_totals` (rendered and cached by `Exposition`)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        """Yield the counter and the histogram."""
        totals = self.ctx.stores.get().list_run_totals()
        by_status = dict.fromkeys(FINAL_STATUSES, 0)
        for row in totals:
            by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        runs = CounterMetricFamily(
            "dagu_dag_runs", "Finished runs by final status", labels=["status"]
        )
        for status, count in sorted(by_status.items()):
            runs.add_metric([status.label], count)
        yield runs
        yield from self._durations(totals)

    def _durations(self, totals: Iterable[dict[str, object]]) -> Iterator[Metric]:
        per_dag: dict[str, tuple[list[int], int, float]] = {}
        for row in totals:
            name = str(row["dag_name"])
            buckets = row["buckets"]
            assert isinstance(buckets, list)
            count = row["duration_count"]
            total = row["duration_sum"]
            assert isinstance(count, int) and isinstance(total, int | float)
            old = per_dag.get(name, ([0] * len(DURATION_BUCKETS_SECONDS), 0, 0.0))
            per_dag[name] = (
                [a + int(b) for a, b in zip(old[0], buckets, strict=True)],
                old[1] + count,
                old[2] + float(total),
            )
        hist = HistogramMetricFamily(
            "dagu_dag_run_duration_seconds", "Duration of finished runs", labels=["dag"]
        )
        for name, (buckets, count, total) in sorted(per_dag.items()):
            if count == 0:
                continue
            pairs = [
                (str(float(b)), c) for b, c in zip(DURATION_BUCKETS_SECONDS, buckets, strict=True)
            ]
            pairs.append(("+Inf", count))
            hist.add_metric([name], pairs, sum_value=total)
        yield hist


def build_registry(
    ctx: ApiContext,
    *,
    scheduler_running: Callable[[], bool] | None = None,
    extra: Iterable[Collector] = (),
) -> CollectorRegistry:
    """A dedicated registry of what is rendered on every scrape from the database: the dagu
    gauges, platform and GC collectors, and any `extra` collectors (e.g. the loop's in
    `start-all`). The process collector and the outage counter are `Exposition.local`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaguCollector(ctx, scheduler_running))
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in extra:
        registry.register(collector)
    return registry


class Exposition:
    """The text of `/api/v2/metrics`: the live registry rendered per scrape, plus the run
    history rendered once per change of `run_totals` (shared by the serving threads)."""

    def __init__(self, ctx: ApiContext, registry: CollectorRegistry) -> None:
        self.ctx = ctx
        self.registry = registry
        self.history = CollectorRegistry(auto_describe=False)
        self.history.register(RunHistoryCollector(ctx))
        self.local = CollectorRegistry(auto_describe=False)  # needs no database
        self.local.register(OutageCollector(ctx))
        ProcessCollector(registry=self.local)
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._text = b""

    def render(self) -> bytes:
        """The whole exposition (Prometheus text format 0.0.4); while the database cannot be
        read, only what needs none of it (the outage counter, the process collectors), so
        that the outage itself can be scraped."""
        outage = generate_latest(self.local)
        try:
            text = self._render_store()
        except (Unavailable, StoreError):
            self.ctx.outage.failed(time.monotonic())
            return outage
        self.ctx.outage.recovered(time.monotonic())
        return outage + text

    def _render_store(self) -> bytes:
        live = generate_latest(self.registry)
        key = self.ctx.stores.get().run_totals_signature()
        with self._lock:
            if key == self._key:
                return live + self._text
        # One render at a time: threads that missed together wait for it and take its text,
        # instead of each building 13,000 samples at once (tens of MiB of peak RSS that the
        # allocator keeps). The gauges above were rendered without waiting.
        with self._render_lock:
            with self._lock:
                if key == self._key:
                    return live + self._text
            text = generate_latest(self.history)
            with self._lock:
                self._key, self._text = key, text
        return live + text


def build_exposition(
    ctx: ApiContext,
    *,
    scheduler_running: Callable[[], bool] | None = None,
    extra: Iterable[Collector] = (),
) -> Exposition:
    """The `/api/v2/metrics` renderer of an app (see `build_registry` for the live part)."""
    registry = build_registry(ctx, scheduler_running=scheduler_running, extra=extra)
    return Exposition(ctx, registry)
