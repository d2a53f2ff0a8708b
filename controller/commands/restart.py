"""`dagloop restart NAME`: stop the running run, wait `restartWaitSec`, start a new run
(new run id) with the same params."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from controller.commands.common import (
    add_common,
    add_json,
    add_progress,
    add_quiet,
    fail,
    settings_from,
)
from controller.dagfile import find_dag_file
from controller.engine import launch


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `restart`."""
    add_common(parser)
    add_quiet(parser)
    add_progress(parser)
    parser.add_argument("dag", help="DAG name or file")
    parser.add_argument("-r", "--run-id", help="the run to restart (default: latest)")
    add_json(parser, "the new run's details (as `status --json`)")


def run(args: argparse.Namespace) -> int:
    """Restart; returns the exit code of the new run."""
    from controller.commands import start
    from controller.engine.runparams import is_masked
    from controller.liveness import on_this_host, reap_lost_run, runner_alive
    from controller.store.records import NotFound
    from controller.store.retry import open_store
    from model.config import ConfigError
    from model.loader import DagLoadError
    from model.status import RunStatus

    try:
        settings = settings_from(args)
        path = find_dag_file(args.dag, settings.dags_dir)
        dag = launch.load(path, settings)
    except (ConfigError, DagLoadError, FileNotFoundError) as exc:
        return fail("restart", exc)
    with open_store(settings) as store:
        try:
            row = store.get_run(dag.name, args.run_id or "latest")
        except NotFound as exc:
            print(f"dagloop restart: {exc}", file=sys.stderr)
            return 1
        if row.status == RunStatus.RUNNING:
            store.update_run(row.id, stop_requested_at=time.time())
            if runner_alive(row) and (row.pid or not on_this_host(row)):
                if on_this_host(row):
                    os.kill(row.pid, signal.SIGTERM)  # type: ignore[arg-type]
                # else: its worker sees stop_requested_at and signals the runner there
                deadline = time.monotonic() + dag.spec.max_clean_up_time_sec + 30
                while time.monotonic() < deadline:
                    if not store.get_run_by_id(row.id).status.is_active():
                        break
                    time.sleep(0.05)
            else:
                reap_lost_run(store, row, "runner process is gone")
        # masked secret params are left out: the new run takes the DAG's default for them
        # (the value given to the first run was never stored; docs/compatibility.md)
        params = [p for p in row.params if not is_masked(p)]
    time.sleep(dag.spec.restart_wait_sec)
    ns = argparse.Namespace(
        dag=str(path),
        run_id=None,
        params=[],
        extra=params,
        json=args.json,
        quiet=args.quiet,
        parent=None,
        root=None,
        local=None,
        config=args.config,
        dagu_home=args.dagu_home,
        progress=args.progress,
        no_color=args.no_color,
        inherit_secrets=False,
    )
    return start.run(ns)
