"""`dagloop server`: serve the read-only API (`/api/v2`) with waitress, and nothing else.

The database is opened read-only, one connection per serving thread. If it does not exist
yet (no controller ever ran in this home), an empty one is created first, so the API answers
with empty lists instead of errors. Listens only on the configured host (`DAGU_HOST`, default
127.0.0.1) and port (`DAGU_PORT`, default 8080). Dispatched by `controller.cli`; `start_all`
reuses `build_app` and `serve_forever`.

This verb is the composition root of the API, so it imports `api` (a layer above
`controller`); the import-linter contract lists this import as its one exception.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from controller.catalog import catalog_for
from controller.commands import common
from controller.logs import setup_process_logging
from controller.store.records import StoreError
from controller.store.retry import open_store
from model.config import ConfigError, Settings

log = logging.getLogger("dagloop.server")

SERVE_THREADS = 8


def configure(parser: argparse.ArgumentParser) -> None:
    """The common options, `-s/--host`, `-p/--port`, `-d/--dags`."""
    common.add_common(parser)
    parser.add_argument("-s", "--host", default=None, help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=None, help="port to listen on")
    parser.add_argument("-d", "--dags", default=None, metavar="DIR", help="DAGs directory")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings with the command line's overrides."""
    overrides = {"host": args.host, "port": args.port, "paths.dagsDir": args.dags}
    return common.settings_from(args, overrides=overrides)


def build_app(
    settings: Settings,
    *,
    started_at: float,
    scheduler_running: Callable[[], bool] | None = None,
    collectors: tuple[Any, ...] = (),
) -> Any:
    """The falcon app on this home: read-only stores, the DAG catalog."""
    from api.app import create_app

    if not settings.database_url and not settings.db_path.exists():
        open_store(settings).close()  # schema only: the API itself never writes
    return create_app(
        settings=settings,
        store_factory=lambda: open_store(settings, readonly=True, role="api"),
        catalog=catalog_for(settings),
        started_at=started_at,
        scheduler_running=scheduler_running,
        collectors=collectors,
    )


def make_server(settings: Settings, app: Any) -> Any:
    """A waitress server bound to settings.host:settings.port (not yet serving)."""
    from waitress.server import create_server

    return create_server(
        app, host=settings.host, port=settings.port, threads=SERVE_THREADS, ident="dagloop"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; exit 0, or 1 on a configuration or database error."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop server: {exc}", file=sys.stderr)
        return 1
    setup_process_logging(settings)
    try:
        app = build_app(settings, started_at=time.time())
        server = make_server(settings, app)
    except (StoreError, OSError) as exc:
        print(f"dagloop server: {exc}", file=sys.stderr)
        return 1
    log.info("API listening", extra={"host": settings.host, "port": server.effective_port})
    _stop_on_sigterm(server)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _stop_on_sigterm(server: Any) -> None:
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
