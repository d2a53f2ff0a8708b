"""`dagloop enqueue NAME|FILE [-r RUN_ID] [-p PARAMS] [-- params...]`: queue a run.

Writes a QUEUED run row (with the DAG file's text as the snapshot and the resolved params) and
rings the controller's doorbell; the controller starts it when the DAG's `maxActiveRuns` and its
queue allow (FIFO). Prints the run id. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from controller.commands.common import add_common, dag_file, settings_from
from controller.doorbell import ring
from controller.engine.runparams import hand_over, mask_params, secret_values, take_handed_over
from controller.ids import new_run_id
from controller.store.records import Conflict, StoreError
from controller.store.store import open_store
from model.config import ConfigError, Settings
from model.loader import DagLoadError, load_base, load_dag, parse_param_overrides, resolve_params
from model.spec import RUN_ID_MAX_LENGTH, RUN_ID_PATTERN
from model.status import RunStatus


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME, `-r/--run-id`, `-p/--params`, `-u/--queue` (accepted, the DAG's queue is used)."""
    add_common(parser)
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-r", "--run-id", default=None)
    parser.add_argument("-p", "--params", action="append", default=[])
    parser.add_argument("-N", "--name", default=None, help="accepted for Dagu compatibility")
    parser.add_argument("-u", "--queue", default=None, help="queue name (default: the DAG's)")
    parser.add_argument("dag")
    parser.add_argument("extra", nargs="*", help="params after --")


def run(args: argparse.Namespace) -> int:
    """Insert the queued run; exit 0 and print its id, or 1 with the reason on stderr."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop enqueue: {exc}", file=sys.stderr)
        return 1
    if args.run_id is not None and (
        not RUN_ID_PATTERN.match(args.run_id) or len(args.run_id) > RUN_ID_MAX_LENGTH
    ):
        print(f"dagloop enqueue: invalid run id {args.run_id!r}", file=sys.stderr)
        return 1
    path = dag_file(args.dag, settings.dags_dir)
    if path is None:
        print(f"dagloop enqueue: DAG {args.dag!r} not found", file=sys.stderr)
        return 1
    try:
        dag = load_dag(path, base=load_base(settings.base_config))
    except DagLoadError as exc:
        print(f"dagloop enqueue: {exc}", file=sys.stderr)
        return 1
    params = resolve_params(dag.spec.params, parse_param_overrides([*args.params, *args.extra]))
    patterns = tuple(settings.secret_patterns)
    now = time.time()
    run_id = args.run_id or new_run_id(now)
    # Secret params are stored masked; values other than the DAG's defaults reach the runner
    # through a 0600 hand-over file it deletes on claiming the run. Written before the row,
    # so a controller that claims the run at once finds it.
    defaults = dict(resolve_params(dag.spec.params, []))
    handed = {k: v for k, v in secret_values(params, patterns).items() if defaults.get(k) != v}
    try:
        hand_over(settings.data_dir, dag.name, run_id, handed)
    except FileExistsError:
        print(f"dagloop enqueue: run id {run_id!r} already exists", file=sys.stderr)
        return 1
    try:
        _record(
            settings,
            dag,
            path,
            run_id,
            queue=args.queue,
            stored_params=mask_params(params, patterns),
            now=now,
        )
    except Conflict:
        if handed:  # the file is ours (created exclusively): the run is not
            take_handed_over(settings.data_dir, dag.name, run_id)
        print(f"dagloop enqueue: run id {run_id!r} already exists", file=sys.stderr)
        return 1
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        if handed:
            take_handed_over(settings.data_dir, dag.name, run_id)
        print(f"dagloop enqueue: {exc}", file=sys.stderr)
        return 1
    ring(settings.data_dir)
    print(run_id)
    return 0


def _record(
    settings: Settings,
    dag: Any,
    path: Path,
    run_id: str,
    *,
    queue: str | None,
    stored_params: list[str],
    now: float,
) -> None:
    """Insert the QUEUED row; raises `Conflict` (id taken) or `StoreError`."""
    with open_store(settings) as store:
        store.record_run(
            dag_name=dag.name,
            run_id=run_id,
            status=RunStatus.QUEUED,
            file=str(path),
            spec_yaml=dag.source,
            queue=queue or dag.queue,
            trigger="enqueue",
            params=stored_params,
            now=now,
        )
