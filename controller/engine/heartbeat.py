"""The run's heartbeat: `heartbeat_at` of the run row, updated from a daemon thread while the
runner works, so the loop tells a live runner from a lost one (DESIGN §3.2).

Called by `controller.engine.launch.execute_run` around `Runner.execute`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from controller.store.store import Store


class Heartbeat:
    """Updates `heartbeat_at` of a run every interval from a daemon thread.

    The thread opens its own store connection lazily, at its first beat, so a short run
    never pays for it.
    """

    def __init__(self, location: Path | str, run: int, interval_seconds: float) -> None:
        self._location = location  # the SQLite file or the PostgreSQL URL
        self._run = run
        self._interval = max(0.05, interval_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (does not wait for a beat in progress beyond a second)."""
        self._stop.set()
        self._thread.join(timeout=1.0)

    def _beat(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if store is None:
                        store = Store(self._location, role="runner")
                    store.update_run(self._run, heartbeat_at=time.time())
                except Exception:  # a busy database must not kill the run
                    continue
        finally:
            if store is not None:
                store.close()
