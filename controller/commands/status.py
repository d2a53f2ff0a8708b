"""`dagloop status NAME [--run-id ID|latest] [--json]`: a run's status as a tree.

A running row whose runner is gone is shown as `lost` (or `running, stale N s` when only the
heartbeat says so), never as plain `running`; with `--reap` it is recorded failed ("lost").
Exit 0 unless the run failed or is unknown (always 0 with `--json` when the run exists).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from controller.commands.common import add_common, add_json, add_quiet, fail, settings_from
from controller.dagfile import find_dag_file
from controller.engine import launch


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `status`."""
    add_common(parser)
    add_quiet(parser)
    parser.add_argument("dag", help="DAG name or file")
    parser.add_argument("-r", "--run-id", default="latest", help="run id (default: latest)")
    add_json(parser, "the run details, with `liveness`")
    parser.add_argument("--reap", action="store_true", help="record a lost run as failed")


def run(args: argparse.Namespace) -> int:
    """Print the status; returns the exit code."""
    from controller.engine.runparams import mask_params
    from controller.liveness import heartbeat_age, reap_lost_run, runner_alive
    from controller.revision import changed_since
    from controller.store.records import NotFound, StoreError
    from controller.store.retry import open_store
    from controller.views.runs import run_details
    from model.config import ConfigError
    from model.status import RunStatus

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("status", exc)
    name = _dag_name(args.dag, settings)
    if not settings.database_url and not settings.db_path.exists():
        print(f"dagloop status: no runs of {name!r}", file=sys.stderr)
        return 1
    try:
        store = open_store(settings)
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        print(f"dagloop status: {exc}", file=sys.stderr)
        return 1
    with store:
        try:
            run_row = store.get_run(name, args.run_id)
        except NotFound as exc:
            print(f"dagloop status: {exc}", file=sys.stderr)
            return 1
        label = run_row.status.label
        if run_row.status == RunStatus.RUNNING and not runner_alive(
            run_row, heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds
        ):
            if args.reap:
                run_row = reap_lost_run(store, run_row, "runner process is gone")
                label = run_row.status.label
            else:
                label = "lost"
        elif run_row.status == RunStatus.RUNNING:
            age = heartbeat_age(run_row)
            if age is not None and age > settings.heartbeat_timeout_seconds:
                label = f"running, stale {int(age)} s"
        details = run_details(store, run_row)
        # Stored params are masked when written; rows written before that are masked here.
        details["params"] = " ".join(
            mask_params(launch.params_to_pairs(run_row.params), tuple(settings.secret_patterns))
        )
        changed = changed_since(Path(run_row.file), run_row.spec_yaml) if run_row.file else None
        if args.json:
            details["liveness"] = label
            details["fileChangedSinceRun"] = changed
            print(json.dumps(details, ensure_ascii=False))
            return 0
        _print_tree(details, label)
        if changed:
            print(f"  the DAG file {run_row.file} has changed since this run")
        if label == "lost" or run_row.status in (RunStatus.FAILED,):
            return 1
        return 0


def _dag_name(arg: str, settings: object) -> str:
    if arg.endswith((".yaml", ".yml")):
        try:
            path = find_dag_file(arg, settings.dags_dir)  # type: ignore[attr-defined]
            dag = launch.load(path, settings)
            return str(dag.name)
        except Exception:
            return Path(arg).stem
    return arg


def _print_tree(d: dict[str, object], label: str) -> None:
    print(f"{d['name']} {d['dagRunId']}  {label}")
    print(f"  started {d['startedAt'] or '-'}  finished {d['finishedAt'] or '-'}")
    if d.get("params"):
        print(f"  params: {d['params']}")
    nodes = list(d["nodes"])  # type: ignore[call-overload]
    for h in ("onInit", "onSuccess", "onFailure", "onCancel", "onExit"):
        if h in d:
            nodes.append(d[h])
    for i, n in enumerate(nodes):
        branch = "└─" if i == len(nodes) - 1 else "├─"
        extra = []
        if n.get("exitCode") not in (None, 0):
            extra.append(f"exit {n['exitCode']}")
        if n.get("retryCount"):
            extra.append(f"retries {n['retryCount']}")
        err = str(n.get("error") or "").splitlines()
        if err:
            extra.append(err[0])
        suffix = f"  ({'; '.join(extra)})" if extra else ""
        print(f"  {branch} {n['step']['name']}: {n['statusLabel']}{suffix}")
    _ = time
