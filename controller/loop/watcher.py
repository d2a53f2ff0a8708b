"""File-system doorbells for the control loop (watchdog).

Watches the DAGs directory, the directory of base.yaml, and the data directory's wake file
(`wake/controller.wake`, touched by `dagloop enqueue`/`dequeue` and other request writers). An event
carries no information into the loop: it only marks "the catalog may have changed" or "look at
the store now" and rings the doorbell; the next pass re-reads everything. If an event is lost,
the periodic resync repairs it.

Callers: `controller.loop.controller`. The doorbell and the wake file's writers live in
`controller.doorbell`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from controller.doorbell import WAKE_FILE, Doorbell


class _Handler(FileSystemEventHandler):
    def __init__(self, bell: Doorbell, dags_dir: Path, base: Path, wake: Path) -> None:
        self.bell = bell
        self.dags_dir = str(dags_dir)
        self.base = str(base)
        self.wake = str(wake)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if self.wake in paths:
            self.bell.ring()
            return
        if any(self._catalog_path(p) for p in paths if p):
            self.bell.ring(catalog=True)

    def _catalog_path(self, path: str) -> bool:
        """A DAG file, base.yaml, or a link on the way to the DAGs directory."""
        return (
            path.startswith(self.dags_dir)
            or self.dags_dir.startswith(path + os.sep)
            or path == self.base
        )


class Watcher:
    """A watchdog observer ringing `bell` on DAG file and wake file changes."""

    def __init__(self, bell: Doorbell, *, dags_dir: Path, base_config: Path, data_dir: Path):
        self._observer: Any = Observer()
        handler = _Handler(bell, dags_dir, base_config, data_dir / WAKE_FILE)
        watched: set[Path] = set()
        dirs = [dags_dir, base_config.parent, (data_dir / WAKE_FILE).parent]
        # git_sync or a git-sync sidecar replaces a symlink (the DAGs directory, or one above
        # it such as git-sync's `--link`) by a rename in its parent; a watch through the link
        # stays on the tree it pointed at when it was made.
        dirs += [d.parent for d in (dags_dir, *dags_dir.parents) if d.is_symlink()]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
            if d not in watched:
                self._observer.schedule(handler, str(d), recursive=False)
                watched.add(d)

    def start(self) -> None:
        """Start the observer thread."""
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        """Stop the observer thread."""
        self._observer.stop()
        self._observer.join(timeout=2)
