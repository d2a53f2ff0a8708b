"""`dagloop dequeue NAME --run-id ID` (or Dagu's `dagloop dequeue QUEUE -d NAME:ID`): abort a
queued run before it starts.

A conditional update (only while the row is still QUEUED), so a run a runner has just claimed is
not touched. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import time

from controller.commands.common import (
    add_common,
    add_json,
    add_quiet,
    fail,
    print_json,
    settings_from,
)
from controller.doorbell import ring
from controller.store.records import NotFound
from controller.store.retry import open_store
from controller.views.runs import run_summary
from model.config import ConfigError
from model.status import RunStatus


def configure(parser: argparse.ArgumentParser) -> None:
    """NAME or QUEUE, `-r/--run-id`, `-d/--dag-run NAME:ID`."""
    add_common(parser)
    add_quiet(parser)
    parser.add_argument("name", help="DAG name (or queue name with -d)")
    parser.add_argument("-r", "--run-id", default=None, help="the queued run's id")
    parser.add_argument(
        "-d", "--dag-run", default=None, metavar="NAME:ID", help="the run as NAME:ID"
    )
    add_json(parser, "the dequeued run's summary")


def run(args: argparse.Namespace) -> int:
    """Abort the queued run: exit 0, or 1 if it is not queued or not found."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("dequeue", exc)
    if args.dag_run:
        dag_name, _, run_id = args.dag_run.partition(":")
    else:
        dag_name, run_id = args.name, args.run_id or ""
    if not dag_name or not run_id:
        return fail("dequeue", "give NAME --run-id ID or -d NAME:ID")
    with open_store(settings) as store:
        try:
            run_row = store.get_run(dag_name, run_id)
        except NotFound as exc:
            return fail("dequeue", exc)
        ok = store.finish_queued_run(
            run_row.id, status=RunStatus.ABORTED, error="dequeued", now=time.time()
        )
        if not ok:
            label = run_row.status.label
            return fail("dequeue", f"run {run_id!r} of {dag_name!r} is not queued ({label})")
        summary = run_summary(store.get_run_by_id(run_row.id))
    ring(settings.data_dir)
    if args.json:
        print_json(summary)
    elif not args.quiet:
        print(f"dequeued {dag_name}:{run_id}")
    return 0
