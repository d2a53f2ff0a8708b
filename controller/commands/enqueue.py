"""`dagloop enqueue NAME|FILE [-r RUN_ID] [-p PARAMS] [-- params...]`: queue a run.

Writes a QUEUED run row (with the DAG file's text as the snapshot and the resolved params) and
rings the controller's doorbell; the controller starts it when the DAG's `maxActiveRuns` and its
queue allow (FIFO). Prints the run id. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from controller.commands.common import (
    add_common,
    add_json,
    add_quiet,
    fail,
    print_json,
    settings_from,
)
from controller.dagfile import find_dag_file
from controller.doorbell import ring
from controller.engine.runparams import hand_over, mask_params, secret_values, take_handed_over
from controller.ids import new_run_id
from controller.revision import revision_of
from controller.store.records import Conflict, RunRecord, StoreError
from controller.store.retry import open_store
from controller.views.runs import run_summary
from model.config import ConfigError, Settings
from model.loader import DagLoadError, load_base, load_dag, parse_param_overrides, resolve_params
from model.spec import RUN_ID_MAX_LENGTH, RUN_ID_PATTERN
from model.status import RunStatus


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME, `-r/--run-id`, `-p/--params`, `-u/--queue` (accepted, the DAG's queue is used)."""
    add_common(parser)
    add_quiet(parser)
    parser.add_argument("-r", "--run-id", default=None, help="run id (default: a new UUIDv7)")
    parser.add_argument("-p", "--params", action="append", default=[], help="params 'K=V a b'")
    parser.add_argument("-N", "--name", default=None, help="accepted for Dagu compatibility")
    parser.add_argument("-u", "--queue", default=None, help="queue name (default: the DAG's)")
    parser.add_argument("dag", help="DAG name (in the dags dir) or file")
    parser.add_argument("extra", nargs="*", help="params after --")
    add_json(parser, "the queued run's summary")


def run(args: argparse.Namespace) -> int:
    """Insert the queued run; exit 0 and print its id, or 1 with the reason on stderr."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("enqueue", exc)
    if args.run_id is not None and (
        not RUN_ID_PATTERN.match(args.run_id) or len(args.run_id) > RUN_ID_MAX_LENGTH
    ):
        return fail("enqueue", f"invalid run id {args.run_id!r}")
    try:
        path = find_dag_file(args.dag, settings.dags_dir)
        dag = load_dag(path, base=load_base(settings.base_config))
    except (DagLoadError, FileNotFoundError) as exc:
        return fail("enqueue", exc)
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
        return fail("enqueue", f"run id {run_id!r} already exists")
    try:
        row = _record(
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
        return fail("enqueue", f"run id {run_id!r} already exists")
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        if handed:
            take_handed_over(settings.data_dir, dag.name, run_id)
        return fail("enqueue", exc)
    ring(settings.data_dir)
    if args.json:
        print_json(run_summary(row))
    else:
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
) -> RunRecord:
    """Insert the QUEUED row and return it; raises `Conflict` (id taken) or `StoreError`."""
    rev = revision_of(path, dag.source)
    with open_store(settings) as store:
        return store.record_run(
            dag_name=dag.name,
            run_id=run_id,
            status=RunStatus.QUEUED,
            file=str(path),
            spec_yaml=dag.source,
            revision_commit=rev.commit,
            revision_dirty=rev.dirty,
            queue=queue or dag.queue,
            trigger="enqueue",
            params=stored_params,
            now=now,
        )
