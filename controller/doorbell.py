"""The doorbell: how events wake a waiting loop without carrying anything into it.

`Doorbell` is rung by event threads (file watcher, runner exits, PostgreSQL notifications) and
waited on by the control loop (`controller.loop.controller`) and the worker
(`controller.cluster.worker`). `ring(data_dir)` touches the wake file that a running
controller watches; the request writers (`dagloop enqueue`, `dequeue`, ...) call it.
"""

from __future__ import annotations

import threading
from pathlib import Path

WAKE_FILE = "wake/controller.wake"  # in its own directory: the database's writes stay unwatched


class Doorbell:
    """A flag set by event threads and consumed by the loop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.catalog_dirty = True

    def ring(self, *, catalog: bool = False) -> None:
        """Wake the loop; `catalog` asks for a DAG directory rescan."""
        if catalog:
            self.catalog_dirty = True
        self.event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or `timeout` seconds passed; clears the bell."""
        rung = self.event.wait(timeout)
        self.event.clear()
        return rung


def ring(data_dir: Path) -> None:
    """Wake a running controller (touch its wake file); harmless when none runs."""
    try:
        wake = data_dir / WAKE_FILE
        wake.parent.mkdir(parents=True, exist_ok=True)
        wake.write_bytes(b"")
    except OSError:
        pass
