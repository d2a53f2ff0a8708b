"""`dagloop start-all`: the controller and the read-only API in one process (the seed's
systemd `ExecStart`).

The API is served by waitress on a background thread; the control loop
(`controller.loop.controller.Controller(settings).run_forever()`, as `dagloop scheduler`) runs in
the main
thread, so it receives SIGTERM
and owns graceful shutdown; when it returns, the API stops and its exit code is ours.
Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

from controller.commands import server as server_command
from controller.logs import setup_process_logging
from controller.store.records import StoreError
from model.config import ConfigError

log = logging.getLogger("dagloop.server")


def configure(parser: argparse.ArgumentParser) -> None:
    """The same options as `dagloop server`."""
    server_command.configure(parser)


def run(args: argparse.Namespace) -> int:
    """Run the loop until it stops (SIGTERM), serving the API meanwhile."""
    try:
        settings = server_command.settings_from(args)
    except ConfigError as exc:
        print(f"dagloop start-all: {exc}", file=sys.stderr)
        return 1
    setup_process_logging(settings)
    from controller.loop.controller import run_controller

    loop_running = threading.Event()
    try:
        app = server_command.build_app(
            settings, started_at=time.time(), scheduler_running=loop_running.is_set
        )
        server = server_command.make_server(settings, app)
    except (StoreError, OSError) as exc:
        print(f"dagloop start-all: {exc}", file=sys.stderr)
        return 1
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    log.info("API listening", extra={"host": settings.host, "port": server.effective_port})
    loop_running.set()
    try:
        code = run_controller(settings)
    finally:
        loop_running.clear()
        server.close()
    return code
