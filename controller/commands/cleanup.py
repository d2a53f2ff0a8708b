"""`dagloop cleanup NAME [--retention-days N] [--dry-run] [-y] [--json]`: delete old run history.

Deletes finished runs of DAG NAME (with sub-runs, steps and log directories) that finished more
than N days ago (default: the DAG's `histRetentionDays`, 30 if the file is gone; `0` = every
finished run); active runs are never deleted. Deleting asks `y/N` when stdin is a terminal and
is refused without `-y/--yes` when it is not (a script must say so); `--dry-run` never asks.
Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from controller.commands.common import (
    add_common,
    add_json,
    fail,
    print_json,
    settings_from,
)
from controller.dagfile import find_dag_file
from controller.reconcile.rules import DEFAULT_RETENTION_DAYS, Prune
from controller.store.records import RunRecord
from controller.store.retry import open_store
from controller.store.store import Store
from model.config import ConfigError, Settings
from model.loader import DagLoadError, load_base, load_dag

# Runs listed and deleted per store round trip (and listed by `--dry-run`).
_BATCH = 1000


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME, `--retention-days`, `--dry-run`, `-y/--yes`, `--json`."""
    add_common(parser)
    parser.add_argument("name", help="DAG name (or file) whose history is deleted")
    parser.add_argument(
        "--retention-days",
        type=int,
        default=None,
        metavar="N",
        help="delete runs finished more than N days ago (default: the DAG's histRetentionDays)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    add_json(parser, '{"name", "retentionDays", "dryRun", "runs": [...]}')


def run(args: argparse.Namespace) -> int:
    """Delete (or list) the runs; exit 0, 1 on errors or when not confirmed."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("cleanup", exc)
    name, days = _target(args.name, args.retention_days, settings)
    deleted: list[RunRecord] = []
    if days >= 0:
        asks = not (args.yes or args.dry_run)
        if asks and not sys.stdin.isatty():
            return fail("cleanup", "stdin is not a terminal: give -y/--yes to delete")
        with open_store(settings) as store:
            before = time.time() - days * 86400.0
            first = store.list_finished_runs(before=before, dag_names=[name], limit=_BATCH)
            if first and asks and not _confirm(name, len(first), days):
                return fail("cleanup", "not confirmed: nothing deleted")
            if args.dry_run:
                deleted = first
            else:
                deleted = _delete(store, settings, name, first, before=before)
    if args.json:
        print_json(
            {
                "name": name,
                "retentionDays": days,
                "dryRun": args.dry_run,
                "runs": [_run_doc(r) for r in deleted],
            }
        )
    else:
        _report(name, days, deleted, dry_run=args.dry_run)
    return 0


def _target(name_or_file: str, days: int | None, settings: Settings) -> tuple[str, int]:
    """The DAG name and retention in days: from the DAG file when there is a valid one (its
    name and `histRetentionDays`), else the argument and the default retention."""
    name = name_or_file
    try:
        dag = load_dag(
            find_dag_file(name_or_file, settings.dags_dir),
            base=load_base(settings.base_config),
        )
    except (DagLoadError, FileNotFoundError):
        pass  # history of a deleted or broken DAG can be cleaned up by its name
    else:
        name = dag.name
        if days is None:
            days = dag.spec.hist_retention_days
    return name, DEFAULT_RETENTION_DAYS if days is None else days


def _confirm(name: str, count: int, days: int) -> bool:
    """Ask on the terminal; the prompt goes to stderr so that stdout stays the report."""
    more = "+" if count >= _BATCH else ""
    print(
        f"delete {count}{more} run(s) of {name} finished more than {days} day(s) ago? [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _delete(
    store: Store, settings: Settings, name: str, first: list[RunRecord], *, before: float
) -> list[RunRecord]:
    """Prune `first`, then every further batch of runs finished before `before`."""
    from controller.catalog import Catalog
    from controller.loop.apply import Applier

    applier = Applier(store, settings, Catalog(settings.dags_dir), time.time)
    deleted: list[RunRecord] = []
    batch = first
    while batch:
        ids = tuple(r.id for r in batch)
        applier.apply([Prune(name, ids, tuple(r.run_id for r in batch), "cleanup")])
        deleted += batch
        batch = store.list_finished_runs(before=before, dag_names=[name], limit=_BATCH)
    return deleted


def _run_doc(r: RunRecord) -> dict[str, Any]:
    """One run of `cleanup --json` (the keys of `status --json`)."""
    return {
        "name": r.dag_name,
        "dagRunId": r.run_id,
        "status": int(r.status),
        "statusLabel": r.status.label,
    }


def _report(name: str, days: int, runs: list[RunRecord], *, dry_run: bool) -> None:
    """The text report: one line per run, or why there was nothing."""
    if days < 0:
        print(f"retention of {name} is {days} days (keep forever): nothing to delete")
        return
    verb = "would delete" if dry_run else "deleted"
    for r in runs:
        print(f"{verb} {r.dag_name} {r.run_id} ({r.status.label})")
    if not runs:
        print(f"no runs of {name} older than {days} day(s)")
