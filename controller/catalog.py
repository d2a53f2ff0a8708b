"""The DAG catalog: every DAG file of the DAGs directory, loaded once and reloaded on change.

`Catalog.refresh()` rescans the directory and reloads only files whose (mtime, size) changed,
or all of them when base.yaml changed; an invalid file is kept as an entry with its errors so
it can be reported (CLI, `plan`, API) while the valid ones keep running.

With `cache_dir` (`spec_cache_dir(settings)`: `<data_dir>/cache/spec`, the directory that
`model.speccache` and the runners use) a file is read from the spec cache when its bytes and
base.yaml's are unchanged since some process validated them, as light objects and without
pydantic or yaml: a fresh `dagloop plan` over 1,000 DAGs reads 1,000 small pickles instead of
validating 1,000 files. The loader (and base.yaml) is only loaded on a miss; a miss writes the
entry, best effort (a read-only cache directory only costs time, it never fails a load).

Callers: the control loop's desired-state builder (on watchdog events and on every resync),
and the API (which serves from this cache instead of re-parsing files per request).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model import speccache

if TYPE_CHECKING:  # the loader imports pydantic: only on a cache miss at run time
    from model.loader import Dag, LoadError

DAG_SUFFIXES = (".yaml", ".yml")


def spec_cache_dir(settings: Any) -> Path:
    """The spec cache directory of a DAGU_HOME (`<data_dir>/cache/spec`)."""
    return Path(settings.data_dir) / speccache.CACHE_SUBDIR


def catalog_for(settings: Any) -> Catalog:
    """The catalog of a DAGU_HOME's settings (DAGs dir, base.yaml, size limit, spec cache,
    `controller.onInvalidDag`), not yet loaded: the loop, the API server and the plan view
    each keep one."""
    return Catalog(
        settings.dags_dir,
        settings.base_config,
        max_file_bytes=settings.max_dag_file_bytes,
        cache_dir=spec_cache_dir(settings),
        keep_last_good=settings.on_invalid_dag == "keep-last-good",
    )


@dataclass(frozen=True)
class CatalogEntry:
    """One DAG file: its loaded DAG, or the errors that kept it from loading."""

    file_name: str  # file stem, Dagu's `fileName`
    path: Path
    dag: Dag | None
    errors: tuple[LoadError, ...] = ()
    stamp: tuple[int, int] = (0, 0)  # (mtime_ns, size) when loaded
    # the file actually read: `path` with the DAGs directory's symlink resolved (a git_sync or
    # git-sync sidecar checkout), which tells the revision (`controller.revision`)
    real_path: Path | None = None
    # the last version of this file that loaded, kept while the file is invalid
    # (`controller.onInvalidDag: keep-last-good`); None when the file is valid or never was
    last_good: Dag | None = None

    @property
    def usable(self) -> Dag | None:
        """The DAG to schedule: the file's, else its last good version (if kept)."""
        return self.dag if self.dag is not None else self.last_good

    @property
    def name(self) -> str:
        """The DAG name (the file stem when no version of the file loaded)."""
        dag = self.usable
        return dag.name if dag is not None else self.file_name


@dataclass
class Catalog:
    """The DAGs of one directory; `refresh()` is cheap when nothing changed."""

    dags_dir: Path
    base_config: Path | None = None
    max_file_bytes: int = 1024 * 1024
    cache_dir: Path | None = None  # spec cache (`spec_cache_dir`); None: always the loader
    keep_last_good: bool = False  # an invalid file keeps its last good version (`last_good`)
    # file stem -> the DAG text its latest run used: the last good version of a file that is
    # invalid when this process starts (a restarted controller, `dagloop plan`)
    last_run_text: Callable[[str], str | None] | None = None
    _entries: dict[str, CatalogEntry] = field(default_factory=dict)
    _by_name: dict[str, CatalogEntry] = field(default_factory=dict)  # `find_dag`'s index
    _base_stamp: tuple[int, int] | None = None
    _base_loaded: bool = False  # _base_data/_base_errors are valid for _base_stamp
    _base_bytes: bytes | None = None
    _base_data: dict[str, object] | None = None
    _base_errors: tuple[LoadError, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0  # bumped whenever anything changed

    def refresh(self) -> bool:
        """Rescan the directory; returns True when any entry changed."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        base_stamp = _stamp(self.base_config) if self.base_config is not None else None
        base_changed = base_stamp != self._base_stamp
        if base_changed:
            # Parsed lazily (`_base`): a pass of cache hits needs only its bytes.
            self._base_loaded = False
            self._base_bytes = self._read_base()
        # The DAGs directory may be a symlink that git_sync or a git-sync sidecar replaces
        # (rename) at any moment: resolve it once, so one refresh reads one tree, never a mix.
        root = Path(os.path.realpath(self.dags_dir))
        # stem -> (file name, stamp); of `a.yaml` and `a.yml` the later name wins, as before
        files = {name[: name.rfind(".")]: (name, stamp) for name, stamp in self._scan(root)}
        changed = base_changed
        for stem in list(self._entries):
            if stem not in files:
                del self._entries[stem]
                changed = True
        for stem, (name, stamp) in files.items():
            old = self._entries.get(stem)
            if (
                old is not None
                and old.stamp == stamp
                and old.path.name == name
                and not base_changed
            ):
                continue
            entry = self._load(stem, self.dags_dir / name, stamp, root / name)
            if entry.dag is None and self.keep_last_good:
                last = old.usable if old is not None else self._stored_last_good(entry)
                entry = replace(entry, last_good=last)
            self._entries[stem] = entry
            changed = True
        self._base_stamp = base_stamp
        if changed:
            self.generation += 1
            # The first file that defines a name keeps it (as the scan order had it).
            self._by_name = {}
            for entry in self._entries.values():
                if entry.usable is not None:
                    self._by_name.setdefault(entry.usable.name, entry)
        return changed

    def _read_base(self) -> bytes | None:
        if self.base_config is None:
            return None
        try:
            return self.base_config.read_bytes()
        except OSError:
            return None

    def _base(self) -> tuple[dict[str, object] | None, tuple[LoadError, ...]]:
        """base.yaml parsed and validated (once per version of the file)."""
        if not self._base_loaded:
            from model.loader import DagLoadError, load_base

            try:
                self._base_data, self._base_errors = load_base(self.base_config), ()
            except DagLoadError as exc:
                self._base_data, self._base_errors = None, tuple(exc.errors)
            self._base_loaded = True
        return self._base_data, self._base_errors

    def _load(self, stem: str, path: Path, stamp: tuple[int, int], real: Path) -> CatalogEntry:
        """The entry of `path`, read from `real` (`path` with the directory resolved)."""
        key_file: Path | None = None
        if self.cache_dir is not None and stamp[1] <= self.max_file_bytes:
            try:
                source = real.read_bytes()
            except OSError:
                source = None
            if source is not None:
                # The key of `speccache.load` (as the runners compute it): entries are shared.
                key = speccache.cache_key(
                    source=source, base=self._base_bytes, location=path, extra="file"
                )
                key_file = self.cache_dir / f"{key}.pickle"
                hit = speccache.read_entry(key_file)
                if hit is not None:
                    return CatalogEntry(stem, path, hit, (), stamp, real)
        from model.loader import DagLoadError, load_dag

        base, base_errors = self._base()
        if base_errors:
            return CatalogEntry(stem, path, None, base_errors, stamp, real)
        try:
            dag = load_dag(real, base=base, max_bytes=self.max_file_bytes)
        except DagLoadError as exc:
            return CatalogEntry(stem, path, None, tuple(exc.errors), stamp, real)
        if key_file is not None:
            speccache.write_entry(key_file, dag)
        return CatalogEntry(stem, path, dag, (), stamp, real)

    def _stored_last_good(self, entry: CatalogEntry) -> Dag | None:
        """The version of `entry`'s file its latest run used, if it still loads."""
        text = self.last_run_text(entry.file_name) if self.last_run_text is not None else None
        base, base_errors = self._base()
        if not text or base_errors:
            return None
        from model.loader import DagLoadError, load_dag_text

        try:
            return load_dag_text(text, file=str(entry.path), location=entry.path, base=base)
        except DagLoadError:
            return None

    def _scan(self, root: Path) -> list[tuple[str, tuple[int, int]]]:
        """Names of the DAG files with their (mtime_ns, size), sorted: one `scandir` and one
        `stat` per file, no `Path` objects (the periodic rescan of 1,000 files stays cheap)."""
        out: list[tuple[str, tuple[int, int]]] = []
        try:
            with os.scandir(root) as it:
                for d in it:
                    name = d.name
                    if (
                        not name.endswith(DAG_SUFFIXES)
                        or name in ("base.yaml", "base.yml")
                        or name.startswith(".")
                    ):
                        continue
                    try:
                        if not d.is_file():
                            continue
                        st = d.stat()
                    except OSError:
                        continue  # vanished between the listing and the stat
                    out.append((name, (st.st_mtime_ns, st.st_size)))
        except OSError:
            return []
        out.sort()
        return out

    def entries(self) -> list[CatalogEntry]:
        """All entries, sorted by file name."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.file_name)

    def get(self, file_name: str) -> CatalogEntry | None:
        """The entry of `file_name` (file stem), or None."""
        with self._lock:
            return self._entries.get(file_name)

    def find_dag(self, name: str) -> CatalogEntry | None:
        """The entry whose DAG is named `name` (falls back to the file name)."""
        with self._lock:
            entry = self._by_name.get(name)
            return entry if entry is not None else self._entries.get(name)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
