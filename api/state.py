"""What every resource reads from: settings, a per-thread read-only store, and the DAG catalog
behind a refresh throttle.

waitress serves requests on several threads and a sqlite3 connection must not be used by two
threads at once, so `StorePool` keeps one store per thread (made by the injected factory).
`CatalogView` rescans the DAG directory at most every `refresh_interval_seconds` (a rescan only
stats files; changed ones are re-parsed by `Catalog`), so no request re-parses every file.
Built by `api.app.create_app`; used by the resources and the metrics collector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.errors import Unavailable
from controller.catalog import Catalog, CatalogEntry
from controller.outage import Outage
from controller.schedule import next_fire, parse_all
from controller.store.records import StoreError
from controller.store.store import Store
from model.config import Settings


class StorePool:
    """One store per thread, opened on first use; a failed open is retried next time."""

    def __init__(self, factory: Callable[[], Store]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> Store:
        """This thread's store; `Unavailable` (503) if the database cannot be opened."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            try:
                store = self._factory()
            except StoreError as exc:
                raise Unavailable(f"the state database is not available: {exc}") from None
            self._local.store = store
        return store


@dataclass
class CatalogView:
    """The catalog, refreshed at most every `refresh_interval_seconds`, plus derived caches."""

    catalog: Catalog
    default_zone: str | None = None
    refresh_interval_seconds: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    _last_refresh: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _generation: int = -1
    _entries: list[CatalogEntry] = field(default_factory=list)
    _next_runs: dict[str, tuple[datetime, datetime | None]] = field(default_factory=dict)

    def entries(self) -> list[CatalogEntry]:
        """All entries sorted by file name, rescanning the directory if the last scan is old."""
        with self._lock:
            now = self.monotonic()
            if self._last_refresh is None or now - self._last_refresh >= (
                self.refresh_interval_seconds
            ):
                self.catalog.refresh()
                self._last_refresh = now
            if self.catalog.generation != self._generation:
                self._entries = self.catalog.entries()
                self._next_runs.clear()
                self._generation = self.catalog.generation
            return self._entries

    def get(self, file_name: str) -> CatalogEntry | None:
        """The entry of `file_name` (a file stem), or None."""
        for entry in self.entries():
            if entry.file_name == file_name:
                return entry
        return None

    def find_dag(self, name: str) -> CatalogEntry | None:
        """The entry whose DAG is named `name` (else whose file stem is `name`), or None."""
        entries = self.entries()
        for entry in entries:
            if entry.dag is not None and entry.dag.name == name:
                return entry
        for entry in entries:
            if entry.file_name == name:
                return entry
        return None

    def next_run(self, entry: CatalogEntry, now: datetime) -> datetime | None:
        """When the DAG's start schedule fires next after `now` (cached until then)."""
        if entry.dag is None or not entry.dag.spec.schedule.start:
            return None
        with self._lock:
            cached = self._next_runs.get(entry.file_name)
        if cached is not None and (cached[1] is None or cached[1] > now) and cached[0] <= now:
            return cached[1]
        try:
            schedules = parse_all(entry.dag.spec.schedule.start, default_zone=self.default_zone)
            value = next_fire(schedules, after=now)
        except (ValueError, KeyError):
            value = None
        with self._lock:
            self._next_runs[entry.file_name] = (now, value)
        return value


@dataclass
class ApiContext:
    """The dependencies of every resource."""

    settings: Settings
    stores: StorePool
    catalog: CatalogView
    started_at: float
    clock: Callable[[], float]
    extras: dict[str, Any] = field(default_factory=dict)
    # this API's view of its database: `/health` degraded and the unavailable-seconds counter
    outage: Outage = field(default_factory=Outage)

    def database_problem(self) -> str | None:
        """Why the database cannot be read now (one cheap read tried), or None; an outage's
        start and end are recorded in `outage`."""
        try:
            self.stores.get().schema_version()
        except (Unavailable, StoreError) as exc:
            self.outage.failed(time.monotonic())
            return str(exc)
        self.outage.recovered(time.monotonic())
        return None


def scheduler_status(ctx: ApiContext, status: str, heartbeat_at: float) -> str:
    """`active` for an instance that says so and whose heartbeat is fresh, else `inactive`."""
    fresh = ctx.clock() - heartbeat_at <= ctx.settings.heartbeat_timeout_seconds
    return "active" if status == "active" and fresh else "inactive"
