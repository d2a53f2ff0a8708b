"""The sync status: what the last git sync did, in the shape of Dagu's `SyncStatusResponse`.

The control loop writes it after every sync (`write_status`, atomic: a temporary file renamed);
the API reads it (`read_status`) for `GET /api/v2/sync/status` and the metrics. A file rather
than a table: the API server may run without the controller's store, and one sync writes one
small document.

Callers: `controller.gitsync.sync` (write), `api.sync` and `api.metrics` (read).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SYNCED = "synced"  # a DAG file of the running commit (item) / the last round succeeded
INVALID = "invalid"  # a DAG file that does not load
PENDING = "pending"  # a valid file of a commit that was refused for another file
ERROR = "error"
NEVER = "never"


@dataclass(frozen=True)
class SyncItem:
    """One DAG file of the last commit fetched: its state (`synced`, `invalid`, `pending`)
    and errors."""

    dag_id: str  # the file name without its suffix, Dagu's fileName
    state: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncStatus:
    """The status document (Dagu's field names)."""

    enabled: bool
    repository: str  # user info removed
    branch: str
    last_sync_at: float | None = None  # epoch seconds of the last attempt
    last_sync_commit: str | None = None  # the commit the DAGs directory points at
    last_sync_status: str = NEVER  # synced | error | never
    last_error: str | None = None
    last_success_at: float | None = None  # epoch seconds
    failures: int = 0  # failed syncs since the controller started
    items: tuple[SyncItem, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The response body in Dagu's names, with `summary` and `counts`."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.state] = counts.get(item.state, 0) + 1
        return {
            "enabled": self.enabled,
            "repository": self.repository,
            "branch": self.branch,
            "lastSyncAt": _iso(self.last_sync_at),
            "lastSyncCommit": self.last_sync_commit,
            "lastSyncStatus": self.last_sync_status,
            "lastError": self.last_error,
            "summary": summarize(self),
            "counts": counts,
            "items": [
                {"dagId": i.dag_id, "state": i.state, "errors": list(i.errors)} for i in self.items
            ],
        }


def summarize(status: SyncStatus) -> str:
    """One sentence for the dashboard card."""
    if not status.enabled:
        return "git sync is disabled"
    if status.last_sync_status == NEVER:
        return "not synced yet"
    commit = (status.last_sync_commit or "")[:12]
    if status.last_sync_status == ERROR:
        keep = f"; still running {commit}" if commit else ""
        return f"last sync failed: {status.last_error}{keep}"
    return f"{len(status.items)} DAG(s) at {commit}"


def write_status(path: Path, status: SyncStatus) -> None:
    """Replace the status file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> SyncStatus | None:
    """The status last written, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        items = tuple(
            SyncItem(i["dag_id"], i["state"], tuple(i.get("errors", ()))) for i in raw["items"]
        )
        return SyncStatus(**{**raw, "items": items})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()
