"""`dagloop start [--run-id ID] [-p PARAMS] [--json] [-q] NAME|FILE [-- params...]`.

Runs a DAG in the foreground in this process (as `dagu start`). With `--run-id` of a QUEUED
row (the control loop's contract) the row is claimed atomically and its snapshot and params
are used. Exit 0 for succeeded (and a DAG-precondition abort), 1 otherwise.

`prepare` does the start-up work of such a runner before its row exists (the fork-server's
prepared runners, forked ahead of a start instant); `run` then uses it when it starts the same
file with the same config, and the prepared spec only if the row's snapshot is the same text.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.engine import launch
from controller.ids import new_run_id

if TYPE_CHECKING:
    from controller.store.store import Store


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `start`."""
    launch.add_common(parser)
    parser.add_argument("dag", help="DAG name (in the dags dir) or file")
    parser.add_argument("-r", "--run-id", help="run id (letters, digits, '-', '_'; ≤ 64)")
    parser.add_argument("-p", "--params", action="append", default=[], help="params 'K=V a b'")
    parser.add_argument("--json", action="store_true", help="print the run details as JSON")
    parser.add_argument("--parent", help=argparse.SUPPRESS)  # NAME:ID of the parent run
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--local", help=argparse.SUPPRESS)  # sub-DAG document of the file
    parser.add_argument("extra", nargs="*", help="params after --")


@dataclass
class Prepared:
    """What `prepare` set up for a runner of `file` (resolved to `path`) with `config`."""

    file: str
    config: str | None
    settings: Any
    path: Path
    store: Store
    text: str  # the snapshot `dag` was loaded from ('' = the file)
    dag: Any
    logs_ahead: Path | None = None  # the run's log directory, made ahead (`launch`)

    def fits(self, args: argparse.Namespace) -> bool:
        """Whether `run(args)` starts what this was prepared for."""
        return (
            args.dag == self.file
            and args.config == self.config
            and not args.dagu_home
            and not args.local
        )


def prepare(file: str, text: str, *, config: str | None) -> Prepared:
    """Settings, store and spec (`text`, the snapshot the controller will record; '' for
    the file) of `start -q --run-id ID [-c CONFIG] FILE`, as `run` would get them; raises
    what they raise."""
    from controller.store.store import open_store

    settings = launch.settings_from(argparse.Namespace(config=config, dagu_home=None))
    path = launch.find_dag_file(file, settings.dags_dir)
    store = open_store(settings, role="runner")
    try:
        dag = launch.load(path, settings, text=text or None)
    except BaseException:
        store.close()
        raise
    logs_ahead = launch.make_logs_ahead(settings, dag)
    return Prepared(file, config, settings, path, store, text, dag, logs_ahead)


def run(args: argparse.Namespace, *, prepared: Prepared | None = None) -> int:
    """Start the run; returns the exit code. `prepared` (from `prepare`) is used if it fits."""
    from controller.engine.runner import initial_step_rows
    from controller.store.records import Conflict, LimitReached, NotFound, StoreError
    from controller.store.store import open_store
    from model.config import ConfigError
    from model.params import RUN_ID_MAX_LENGTH, RUN_ID_PATTERN, resolve_params
    from model.status import RunStatus

    if prepared is not None and not prepared.fits(args):
        prepared.store.close()
        prepared = None
    try:
        settings = prepared.settings if prepared is not None else launch.settings_from(args)
    except ConfigError as exc:
        print(f"dagloop start: {exc}", file=sys.stderr)
        return 1
    if args.run_id is not None and (
        not RUN_ID_PATTERN.match(args.run_id) or len(args.run_id) > RUN_ID_MAX_LENGTH
    ):
        print(f"dagloop start: invalid run id {args.run_id!r}", file=sys.stderr)
        return 1
    try:
        path = launch.find_dag_file(args.dag, settings.dags_dir)
    except FileNotFoundError as exc:
        print(f"dagloop start: {exc}", file=sys.stderr)
        return 1
    if prepared is not None and prepared.path != path:
        prepared.store.close()  # the file now resolves elsewhere: start from scratch
        prepared = None
    try:
        store = prepared.store if prepared is not None else open_store(settings, role="runner")
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        print(f"dagloop start: {exc}", file=sys.stderr)
        return 1
    try:
        queued = None
        dag_name_guess = args.local or path.stem
        if args.run_id is not None:
            try:
                queued = store.get_run(dag_name_guess, args.run_id)
            except NotFound:
                queued = None
            if queued is not None and queued.status != RunStatus.QUEUED:
                print(
                    f"dagloop start: run {args.run_id!r} of {dag_name_guess!r} already exists "
                    f"({queued.status.label})",
                    file=sys.stderr,
                )
                return 1
        try:
            snapshot = queued.spec_yaml if queued is not None else ""
            if prepared is not None and snapshot and snapshot == prepared.text:
                dag = prepared.dag  # loaded from the run's own snapshot: the current spec
            elif snapshot:
                dag = launch.load(path, settings, text=snapshot, local=args.local)
            else:
                dag = launch.load(path, settings, local=args.local)
        except _load_error() as exc:
            print(f"dagloop start: {exc}", file=sys.stderr)
            if queued is not None:
                store.update_run(queued.id, status=RunStatus.FAILED, error=str(exc))
            return 1
        if dag.name != dag_name_guess and args.run_id is not None and queued is None:
            try:
                queued = store.get_run(dag.name, args.run_id)
            except NotFound:
                queued = None
            if queued is not None and queued.status != RunStatus.QUEUED:
                print(f"dagloop start: run {args.run_id!r} already exists", file=sys.stderr)
                return 1
        if queued is not None:
            attempt_id = new_run_id(time.time())[-6:]
            started = launch.started_fields(settings, dag, queued)
            # The step rows go with the claim: one write, where fifty runners of a minute
            # boundary queue for the database's one write lock.
            claimed = store.claim_queued_run(
                queued.id, steps=initial_step_rows(dag), attempt_id=attempt_id, **started
            )
            if claimed is None:
                print(
                    f"dagloop start: run {args.run_id!r} is no longer queued "
                    "(claimed by another runner or dequeued)",
                    file=sys.stderr,
                )
                return 1
            run_row, step_ids = claimed
            params = launch.params_for_runner(run_row, dag, settings, queued=True)
        else:
            overrides = _overrides([*args.params, *args.extra])
            params = resolve_params(dag.spec.params, overrides)
            parent_dag, _, parent_id = (args.parent or "").partition(":")
            root_dag, _, root_id = (args.root or "").partition(":")
            try:
                run_row = store.record_run(
                    dag_name=dag.name,
                    run_id=args.run_id or new_run_id(time.time()),
                    status=RunStatus.RUNNING,
                    file=str(path),
                    spec_yaml=dag.source or (path.read_text(encoding="utf-8")),
                    queue=dag.queue,
                    trigger="sub" if args.parent else "manual",
                    params=launch.stored_params(params, settings),
                    parent_dag=parent_dag,
                    parent_run_id=parent_id,
                    root_dag=root_dag,
                    root_run_id=root_id,
                    # maxActiveRuns holds for every run (DESIGN §7), atomically (issue 8 #20)
                    max_active=None if args.parent else dag.spec.max_active_runs,
                )
            except LimitReached as exc:
                print(f"dagloop start: refused: {exc}; use `dagloop enqueue`", file=sys.stderr)
                return 1
            except Conflict:
                print(f"dagloop start: run id {args.run_id!r} is taken", file=sys.stderr)
                return 1
            store.update_run(run_row.id, attempt_id=new_run_id(time.time())[-6:])
            run_row = store.get_run_by_id(run_row.id)
            step_ids = None
        return launch.execute_run(
            store=store,
            settings=settings,
            dag=dag,
            run=run_row,
            params=params,
            quiet=args.quiet,
            as_json=args.json,
            start_recorded=queued is not None,
            step_ids=step_ids,
        )
    except StoreError as exc:  # a write the disk refused mid-run; the row is reaped as lost
        print(f"dagloop start: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


# Both helpers import model.loader (and so pydantic) only when needed: a cached DAG started
# without params never pays for it. An `except` clause evaluates its type only when an
# exception is being handled.
def _load_error() -> type[Exception]:
    from model.loader import DagLoadError

    return DagLoadError


def _overrides(tokens: list[str]) -> list[tuple[str | None, str]]:
    if not tokens:
        return []
    from model.loader import parse_param_overrides

    return parse_param_overrides(tokens)
