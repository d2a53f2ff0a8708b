"""System endpoints: `/health`, `/metrics`, `/openapi.yaml`, `/queues`, `/services/scheduler`,
`/workers` and `/plan`. Routed by `api.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST

from api.state import ApiContext, scheduler_status
from controller.store.records import RunRecord
from controller.views.plan import plan_document
from controller.views.runs import rfc3339, run_summary
from model import __version__
from model.status import RunStatus

if TYPE_CHECKING:
    from api.metrics import Exposition

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


class Health:
    """GET /api/v2/health: `{status, version, uptime, timestamp}` (and `database` when
    degraded); always open."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Healthy whenever the process answers and reads its database; `degraded` (still
        200: restarting this process would not bring the database back) with the reason in
        `database` while it cannot."""
        now = self.ctx.clock()
        problem = self.ctx.database_problem()
        resp.media = {
            "status": "healthy" if problem is None else "degraded",
            "version": __version__,
            "uptime": int(max(0.0, now - self.ctx.started_at)),
            "timestamp": rfc3339(now),
        }
        if problem is not None:
            resp.media["database"] = f"unreachable: {problem}"

    on_head = on_get


class Metrics:
    """GET /api/v2/metrics: Prometheus text exposition."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Scrape (`api.metrics.Exposition`: the run history is cached until it changes)."""
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.exposition.render()

    on_head = on_get


class OpenApi:
    """GET /api/v2/openapi.yaml: the description of exactly what this API serves."""

    def __init__(self) -> None:
        self.text = OPENAPI_PATH.read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The document, as YAML."""
        resp.content_type = "application/yaml"
        resp.data = self.text

    on_head = on_get


class Queues:
    """GET /api/v2/queues: global queues and DAG queues with their running and queued runs."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Dagu's `{queues: [...], summary: {...}}`."""
        settings = self.ctx.settings
        queues: dict[str, dict[str, Any]] = {}
        for q in settings.queues:
            queues[q.name] = _queue(q.name, "global", max(1, q.max_active_runs))
        active = self.ctx.stores.get().list_active_runs()
        for run in active:
            name = run.queue or run.dag_name
            if name not in queues:
                entry = self.ctx.catalog.find_dag(run.dag_name)
                limit = entry.dag.spec.max_active_runs if entry and entry.dag else 1
                queues[name] = _queue(name, "dag-based", max(1, limit))
            if run.status == RunStatus.QUEUED:
                queues[name]["queued"].append(run_summary(run))
            else:
                queues[name]["running"].append(run_summary(run))
        items = sorted(queues.values(), key=lambda q: (q["type"] != "global", q["name"]))
        running = sum(len(q["running"]) for q in items)
        capacity = sum(q["maxConcurrency"] for q in items)
        resp.media = {
            "queues": items,
            "summary": {
                "totalQueues": len(items),
                "totalRunning": running,
                "totalQueued": sum(len(q["queued"]) for q in items),
                "totalCapacity": capacity,
                "utilizationPercentage": round(100.0 * running / capacity, 1) if capacity else 0.0,
            },
        }

    on_head = on_get


def _queue(name: str, kind: str, limit: int) -> dict[str, Any]:
    return {"name": name, "type": kind, "maxConcurrency": limit, "running": [], "queued": []}


class Schedulers:
    """GET /api/v2/services/scheduler: `{schedulers: [{instanceId, host, status, startedAt}]}`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The controller instances recorded in the store, newest first."""
        resp.media = {
            "schedulers": [
                {
                    "instanceId": inst.id,
                    "host": inst.host,
                    "status": scheduler_status(self.ctx, inst.status, inst.heartbeat_at),
                    "startedAt": rfc3339(inst.started_at),
                }
                for inst in self.ctx.stores.get().list_instances()
            ]
        }

    on_head = on_get


class Workers:
    """GET /api/v2/workers: the `dagloop worker` processes that have not stopped, in Dagu's
    `WorkersListResponse` shape (each worker's pollers are its `maxActiveRuns` slots)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """`{workers: [{id, labels, totalPollers, busyPollers, runningTasks, lastHeartbeatAt,
        healthStatus, host}], errors: []}`, newest start first."""
        store = self.ctx.stores.get()
        workers = []
        for worker in store.list_workers():
            if worker.status == "stopped":
                continue
            tasks = [
                _running_task(run)
                for run in store.list_worker_runs(worker.id)
                if run.status != RunStatus.QUEUED  # claimed, not started yet
            ]
            workers.append(
                {
                    "id": worker.id,
                    "labels": worker.labels,
                    "totalPollers": worker.max_active_runs,
                    "busyPollers": len(tasks),
                    "runningTasks": tasks,
                    "lastHeartbeatAt": rfc3339(worker.heartbeat_at),
                    "healthStatus": worker_health(self.ctx, worker.heartbeat_at),
                    "host": worker.host,  # dagloop addition
                }
            )
        resp.media = {"workers": workers, "errors": []}

    on_head = on_get


def worker_health(ctx: ApiContext, heartbeat_at: float) -> str:
    """Dagu's `WorkerHealthStatus` from the heartbeat's age: `healthy` while at most one beat
    was missed, `warning` until the heartbeat timeout (when the leader takes the worker for
    dead and hands its runs on), `unhealthy` after."""
    age = ctx.clock() - heartbeat_at
    if age <= 2 * ctx.settings.heartbeat_interval_seconds:
        return "healthy"
    if age <= ctx.settings.heartbeat_timeout_seconds:
        return "warning"
    return "unhealthy"


def _running_task(run: RunRecord) -> dict[str, str]:
    """Dagu's `RunningTask` of a run a worker executes."""
    task = {
        "dagRunId": run.run_id,
        "dagName": run.dag_name,
        "startedAt": rfc3339(run.started_at),
        "rootDagRunName": run.root_dag or run.dag_name,
        "rootDagRunId": run.root_run_id or run.run_id,
    }
    if run.parent_run_id:
        task["parentDagRunName"] = run.parent_dag
        task["parentDagRunId"] = run.parent_run_id
    return task


class Plan:
    """GET /api/v2/plan: what the controller would do now, as `dagloop plan --json`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The document of `dagloop plan --json`, from this thread's read-only store and the
        API's loaded DAGs."""
        resp.media = plan_document(
            settings=self.ctx.settings,
            store=self.ctx.stores.get(),
            catalog=self.ctx.catalog.catalog,
        )

    on_head = on_get
