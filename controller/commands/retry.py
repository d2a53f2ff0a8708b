"""`dagloop retry NAME --run-id ID [--step S]`: a new attempt under the same run id.

Re-runs the failed/aborted (and never started) steps and their downstream, keeping the
succeeded ones with their outputs; `--step S` re-runs only S. Uses the run's snapshot and
params. Refuses while the previous attempt's runner is alive.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

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
from controller.ids import new_run_id


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `retry`."""
    add_common(parser)
    add_quiet(parser)
    add_progress(parser)
    parser.add_argument("dag", help="DAG name or file")
    parser.add_argument("-r", "--run-id", required=True, help="the run to retry")
    parser.add_argument("--step", help="re-run only this step")
    add_json(parser, "the run details (as `status --json`)")


def run(args: argparse.Namespace) -> int:
    """Retry; returns the exit code of the new attempt."""
    from controller.store.records import StoreError
    from model.config import ConfigError

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("retry", exc)
    name = Path(args.dag).stem if args.dag.endswith((".yaml", ".yml")) else args.dag
    try:
        return _retry(args, settings, name)
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        print(f"dagloop retry: {exc}", file=sys.stderr)
        return 1


def _retry(args: argparse.Namespace, settings: Any, name: str) -> int:
    """The retry itself, on an open store."""
    from controller.liveness import reap_lost_run, runner_alive
    from controller.store.records import NotFound
    from controller.store.retry import open_store
    from model.loader import DagLoadError
    from model.status import RunStatus

    with open_store(settings) as store:
        try:
            row = store.get_run(name, args.run_id)
        except NotFound as exc:
            print(f"dagloop retry: {exc}", file=sys.stderr)
            return 1
        if row.status == RunStatus.RUNNING:
            if runner_alive(row, heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds):
                print(f"dagloop retry: run {row.run_id} is still running", file=sys.stderr)
                return 1
            row = reap_lost_run(store, row, "runner process is gone")
        path = Path(row.file) if row.file else find_dag_file(args.dag, settings.dags_dir)
        try:
            dag = launch.load(path, settings, text=row.spec_yaml or None)
            if row.parent_run_id and dag.name != row.dag_name and row.dag_name in dag.local_dags:
                dag = launch.local_dag(dag, row.dag_name)
        except (DagLoadError, FileNotFoundError) as exc:
            print(f"dagloop retry: {exc}", file=sys.stderr)
            return 1
        if args.step and all(s.name != args.step for s in dag.spec.steps):
            print(f"dagloop retry: no step {args.step!r} in {dag.name}", file=sys.stderr)
            return 1
        previous = {s.name: s for s in store.list_steps(row.id) if s.kind == "step"}
        was_queued = row.status == RunStatus.QUEUED
        if was_queued:
            if store.claim_queued_run(row.id, attempt_id=new_run_id(time.time())[-6:]) is None:
                print(f"dagloop retry: run {row.run_id} is no longer queued", file=sys.stderr)
                return 1
            previous = {}
        else:
            store.update_run(
                row.id,
                status=RunStatus.RUNNING,
                attempt=row.attempt + 1,
                attempt_id=new_run_id(time.time())[-6:],
            )
        row = store.get_run_by_id(row.id)
        return launch.execute_run(
            store=store,
            settings=settings,
            dag=dag,
            run=row,
            # secret params are stored masked: restored from a hand-over or the DAG defaults
            params=launch.params_for_runner(row, dag, settings, queued=was_queued),
            quiet=args.quiet,
            as_json=args.json,
            previous=previous or None,
            retry_step=args.step,
            log_stderr=True,  # in the foreground, as `start`
            progress=args.progress,
            no_color=args.no_color,
        )
