"""`dagloop worker [-l k=v,…] [-m N] [-w ID]`: run dispatched runs on this host.

Claims the runs the leader hands to workers (`scheduler.dispatch: workers`, or DAGs with a
`workerSelector`) from the shared database (`DAGU_DATABASE_URL`) and runs each with a local
runner; see `controller.cluster.worker`. Flags as Dagu's (`--worker.labels`, …) or short.
Dispatched by
`controller.cli`.
"""

from __future__ import annotations

import argparse
import sys

from controller.commands.common import add_common, settings_from
from controller.logs import setup_process_logging
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """`-c/--config`, `--dagu-home`, `-l/--labels`, `-m/--max-active-runs`, `-w/--worker-id`."""
    add_common(parser)
    parser.add_argument(
        "-l",
        "--labels",
        "--worker.labels",
        default=None,
        metavar="K=V,…",
        help="this worker's labels",
    )
    parser.add_argument(
        "-m",
        "--max-active-runs",
        "--worker.max-active-runs",
        type=int,
        default=None,
        metavar="N",
        help="runs at once on this worker (default 100)",
    )
    parser.add_argument(
        "-w", "--worker-id", "--worker.id", default=None, metavar="ID", help="default host@pid"
    )


def run(args: argparse.Namespace) -> int:
    """Run the worker; exit 0 after a graceful stop, 1 on a configuration error."""
    try:
        settings = settings_from(args)
        if args.max_active_runs is not None and args.max_active_runs < 1:
            raise ConfigError(f"--max-active-runs: must be at least 1, not {args.max_active_runs}")
        from controller.cluster.worker import parse_labels, worker_from

        if args.labels is not None:
            parse_labels(args.labels)  # a bad label is a usage error, reported before start
    except (ConfigError, ValueError) as exc:
        print(f"dagloop worker: {exc}", file=sys.stderr)
        return 1
    setup_process_logging(settings)
    from controller.store.records import StoreError

    try:
        worker = worker_from(
            settings,
            labels=args.labels,
            max_active_runs=args.max_active_runs,
            worker_id=args.worker_id,
        )
    except (StoreError, ValueError) as exc:
        print(f"dagloop worker: {exc}", file=sys.stderr)
        return 1
    return worker.run_forever()
