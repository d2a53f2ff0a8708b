"""`GET /api/v2/sync/status` (Dagu's SyncStatusResponse) and the git_sync metrics, both read
from the status file the control loop writes after each sync (`controller.gitsync.status`).

Routed and registered by `api.app.create_app`. Read-only: the API never syncs.
"""

from __future__ import annotations

from collections.abc import Iterator

import falcon
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.gitsync.checkouts import layout_for
from controller.gitsync.git import redact_url
from controller.gitsync.status import SyncStatus, read_status
from model.config import Settings


def current_status(settings: Settings) -> SyncStatus:
    """The last sync's status; before any sync (or with git_sync off), the configuration."""
    configured = SyncStatus(
        enabled=settings.gitsync_enabled,
        repository=redact_url(settings.gitsync_repository or ""),
        branch=settings.gitsync_branch,
    )
    if not settings.gitsync_enabled:
        return configured
    return read_status(layout_for(settings.home).status_file) or configured


class SyncStatusResource:
    """GET /api/v2/sync/status."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The status document (`SyncStatus.to_json`)."""
        resp.media = current_status(self.settings).to_json()

    on_head = on_get


class GitSyncCollector(Collector):
    """`dagloop_gitsync_last_success_timestamp_seconds` and `dagloop_gitsync_failures_total`
    (only when git_sync is enabled)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        """Yield the two families from the status file."""
        if not self.settings.gitsync_enabled:
            return
        status = current_status(self.settings)
        yield GaugeMetricFamily(
            "dagloop_gitsync_last_success_timestamp_seconds",
            "When the DAGs directory last synced from git (0: never)",
            value=status.last_success_at or 0.0,
        )
        yield CounterMetricFamily(
            "dagloop_gitsync_failures",
            "Failed git syncs (fetch, checkout or an invalid commit) since the controller started",
            value=status.failures,
        )
