"""`dagloop dequeue NAME --run-id ID` (or Dagu's `dagloop dequeue QUEUE -d NAME:ID`): abort a
queued run before it starts.

A conditional update (only while the row is still QUEUED), so a run a runner has just claimed is
not touched. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time

from controller.commands.common import add_common, settings_from
from controller.doorbell import ring
from controller.store.records import NotFound
from controller.store.store import open_store
from model.config import ConfigError
from model.status import RunStatus


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME or QUEUE, `-r/--run-id`, `-d/--dag-run NAME:ID`."""
    add_common(parser)
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("name", help="DAG name (or queue name with -d)")
    parser.add_argument("-r", "--run-id", default=None)
    parser.add_argument("-d", "--dag-run", default=None, metavar="NAME:ID")


def run(args: argparse.Namespace) -> int:
    """Abort the queued run: exit 0, or 1 if it is not queued or not found."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop dequeue: {exc}", file=sys.stderr)
        return 1
    if args.dag_run:
        dag_name, _, run_id = args.dag_run.partition(":")
    else:
        dag_name, run_id = args.name, args.run_id or ""
    if not dag_name or not run_id:
        print("dagloop dequeue: give NAME --run-id ID or -d NAME:ID", file=sys.stderr)
        return 1
    with open_store(settings) as store:
        try:
            run_row = store.get_run(dag_name, run_id)
        except NotFound as exc:
            print(f"dagloop dequeue: {exc}", file=sys.stderr)
            return 1
        ok = store.finish_queued_run(
            run_row.id, status=RunStatus.ABORTED, error="dequeued", now=time.time()
        )
    if not ok:
        print(
            f"dagloop dequeue: run {run_id!r} of {dag_name!r} is not queued "
            f"({run_row.status.label})",
            file=sys.stderr,
        )
        return 1
    ring(settings.data_dir)
    if not args.quiet:
        print(f"dequeued {dag_name}:{run_id}")
    return 0
