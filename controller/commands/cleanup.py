"""`dagloop cleanup NAME [--retention-days N] [--dry-run] [-y]`: delete old run history.

Deletes finished runs of DAG NAME (with sub-runs, steps and log directories) that finished more
than N days ago (default: the DAG's `histRetentionDays`, 30 if the file is gone; `0` = every
finished run); active runs are never deleted. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time

from controller.catalog import Catalog
from controller.commands.common import add_common, dag_file, settings_from
from controller.loop.apply import Applier
from controller.reconcile.rules import DEFAULT_RETENTION_DAYS, Prune
from controller.store.records import RunRecord
from controller.store.store import open_store
from model.config import ConfigError
from model.loader import DagLoadError, load_base, load_dag


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME, `--retention-days`, `--dry-run`, `-y/--yes`."""
    add_common(parser)
    parser.add_argument("name")
    parser.add_argument("--retention-days", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    """Delete (or list) the runs; exit 0, 1 on errors or when not confirmed."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop cleanup: {exc}", file=sys.stderr)
        return 1
    name = args.name
    days = args.retention_days
    path = dag_file(name, settings.dags_dir)
    if path is not None:
        try:
            dag = load_dag(path, base=load_base(settings.base_config))
            name = dag.name
            if days is None:
                days = dag.spec.hist_retention_days
        except DagLoadError:
            pass
    if days is None:
        days = DEFAULT_RETENTION_DAYS
    if days < 0:
        print(f"retention of {name} is {days} days (keep forever): nothing to delete")
        return 0
    now = time.time()
    with open_store(settings) as store:
        runs: list[RunRecord] = []
        applier = Applier(store, settings, Catalog(settings.dags_dir), time.time)
        confirmed = args.yes or args.dry_run or not sys.stdin.isatty()
        while True:
            batch = store.list_finished_runs(
                before=now - days * 86400.0, dag_names=[name], limit=1000
            )
            if not batch:
                break
            if not confirmed:
                answer = input(f"delete {len(batch)}+ run(s) of {name}? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    return 1
                confirmed = True
            runs += batch
            if args.dry_run:
                break
            ids = tuple(r.id for r in batch)
            applier.apply([Prune(name, ids, tuple(r.run_id for r in batch), "cleanup")])
        verb = "would delete" if args.dry_run else "deleted"
        for r in runs:
            print(f"{verb} {r.dag_name} {r.run_id} ({r.status.label})")
        if not runs:
            print(f"no runs of {name} older than {days} day(s)")
    return 0
