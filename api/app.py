"""The falcon application factory: `create_app(...)` wires resources, auth and error handling.

Dependencies come in (settings, a factory of read-only stores, the DAG catalog, the start
instant, a clock), so tests build the app on temporary files and the server commands on the
real ones. Every route answers GET and HEAD; other methods get falcon's 405 with `Allow`.
Called by `controller.commands.server`, `controller.commands.start_all` and the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import falcon
from prometheus_client.registry import Collector

from api import errors
from api.auth import AuthMiddleware
from api.dags import DagDetail, DagList, DagRunHistory, DagSearch, DagSpecText, DagTags
from api.metrics import build_exposition
from api.runs import RunDetails, RunList, RunLogs
from api.state import ApiContext, CatalogView, StorePool
from api.sync import GitSyncCollector, SyncStatusResource
from api.system import Health, Metrics, OpenApi, Plan, Queues, Schedulers, Workers
from controller.catalog import Catalog
from controller.reconcile.desired import last_run_text
from controller.store.records import StoreError
from controller.store.store import Store
from model.config import Settings

try:  # the web dashboard is optional: a build without api/dashboard.py serves the API only
    from api.dashboard import add_dashboard_routes
except ImportError:  # pragma: no cover - depends on the build
    add_dashboard_routes = None  # type: ignore[assignment]

PREFIX = "/api/v2"
READ_METHODS = ("GET", "HEAD")


class ReadOnlyMiddleware:
    """Answers 405 (with `Allow: GET, HEAD`) to every other method, OPTIONS included,
    before authentication: nothing here can be written, whoever asks."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse methods other than GET and HEAD."""
        if req.method not in READ_METHODS:
            raise falcon.HTTPMethodNotAllowed(list(READ_METHODS))


def create_app(
    *,
    settings: Settings,
    store_factory: Callable[[], Store],
    catalog: Catalog,
    started_at: float,
    clock: Callable[[], float] = time.time,
    scheduler_running: Callable[[], bool] | None = None,
    collectors: Iterable[Collector] = (),
    catalog_refresh_seconds: float = 1.0,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the read-only API.

    `store_factory` opens a read-only store; it is called once per serving thread.
    `scheduler_running` (start-all) reports whether the in-process loop runs; without it the
    store's controller instances decide. `collectors` are added to the metrics registry.
    """
    ctx = ApiContext(
        settings=settings,
        stores=StorePool(store_factory),
        catalog=CatalogView(
            catalog, default_zone=settings.tz, refresh_interval_seconds=catalog_refresh_seconds
        ),
        started_at=started_at,
        clock=clock,
    )
    catalog.last_run_text = _last_run_text(ctx.stores)
    middleware: list[Any] = [ReadOnlyMiddleware(), AuthMiddleware(settings)]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    # `?perPage=` is a bad value, not an absent one: keep blank values so they are checked.
    app.req_options.keep_blank_qs_values = True
    errors.install(app)
    collectors = (*collectors, GitSyncCollector(settings))
    exposition = build_exposition(ctx, scheduler_running=scheduler_running, extra=collectors)

    dag_runs = DagRunHistory(ctx)
    run_details = RunDetails(ctx)
    run_list = RunList(ctx)
    logs = RunLogs(ctx)
    routes: list[tuple[str, object, str | None]] = [
        ("/health", Health(ctx), None),
        ("/metrics", Metrics(exposition), None),
        ("/openapi.yaml", OpenApi(), None),
        ("/dags", DagList(ctx), None),
        ("/dags/tags", DagTags(ctx), None),
        ("/dags/search", DagSearch(ctx), None),
        ("/dags/{fileName}", DagDetail(ctx), None),
        ("/dags/{fileName}/spec", DagSpecText(ctx), None),
        ("/dags/{fileName}/dag-runs", dag_runs, None),
        ("/dags/{fileName}/dag-runs/{dagRunId}", dag_runs, "one"),
        ("/dag-runs", run_list, None),
        ("/dag-runs/{name}", run_list, "by_name"),
        ("/dag-runs/{name}/{dagRunId}", run_details, None),
        ("/dag-runs/{name}/{dagRunId}/spec", run_details, "spec"),
        ("/dag-runs/{name}/{dagRunId}/outputs", run_details, "outputs"),
        ("/dag-runs/{name}/{dagRunId}/sub-dag-runs", run_details, "subruns"),
        ("/dag-runs/{name}/{dagRunId}/log", logs, None),
        ("/dag-runs/{name}/{dagRunId}/steps/{stepName}/log", logs, "step"),
        ("/queues", Queues(ctx), None),
        ("/services/scheduler", Schedulers(ctx), None),
        ("/workers", Workers(ctx), None),
        ("/plan", Plan(ctx), None),
        ("/sync/status", SyncStatusResource(settings), None),
    ]
    if add_dashboard_routes is not None:
        add_dashboard_routes(app)
    for path, resource, suffix in routes:
        if suffix is None:
            app.add_route(PREFIX + path, resource)
        else:
            app.add_route(PREFIX + path, resource, suffix=suffix)
    return app


def _last_run_text(stores: StorePool) -> Callable[[str], str | None]:
    """The catalog's last good versions from the runs (`controller.onInvalidDag`), so that a
    fresh server shows the version a restarted controller keeps scheduling; without a
    database the DAGs are still listed, only without it."""

    def lookup(name: str) -> str | None:
        try:
            return last_run_text(stores.get())(name)
        except (errors.Unavailable, StoreError):
            return None

    return lookup
