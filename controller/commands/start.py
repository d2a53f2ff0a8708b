"""`dagloop start [--run-id ID] [-p PARAMS] [--json] [-q] [--progress MODE] [--no-color]
NAME|FILE [-- params...]`.

Runs a DAG in the foreground in this process (as `dagu start`): parses the options, loads the
settings and hands both to `controller.engine.start`, which claims a QUEUED row named by
`--run-id` (the control loop's contract) or records a new run, and runs it, showing it live on
a terminal (`controller.engine.progress`). Exit 0 for succeeded (and a DAG-precondition abort),
1 otherwise (Ctrl-C stops the run as `dagloop stop` does: aborted, 1).
"""

from __future__ import annotations

import argparse
import sys

from controller.commands.common import (
    add_common,
    add_json,
    add_progress,
    add_quiet,
    fail,
    settings_from,
)
from controller.engine.start import StartOptions, start
from controller.engine.subdag import read_inherited_secrets


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `start`."""
    add_common(parser)
    add_quiet(parser)
    add_progress(parser)
    parser.add_argument("dag", help="DAG name (in the dags dir) or file")
    parser.add_argument("-r", "--run-id", help="run id (letters, digits, '-', '_'; ≤ 64)")
    parser.add_argument("-p", "--params", action="append", default=[], help="params 'K=V a b'")
    add_json(parser, "the run details (as `status --json`)")
    parser.add_argument("--parent", help=argparse.SUPPRESS)  # NAME:ID of the parent run
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--local", help=argparse.SUPPRESS)  # sub-DAG document of the file
    # the parent run's secret values arrive as JSON on stdin (`subdag.hand_on_secrets`)
    parser.add_argument("--inherit-secrets", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="params after --")


def options(args: argparse.Namespace) -> StartOptions:
    """The engine's options for parsed `start` arguments."""
    return StartOptions(
        dag=args.dag,
        run_id=args.run_id,
        params=(*args.params, *args.extra),
        quiet=args.quiet,
        as_json=args.json,
        parent=args.parent,
        root=args.root,
        local=args.local,
        config=args.config,
        dagu_home=args.dagu_home,
        # a sub-DAG run's stderr is its parent step's log, not a log shipper's stream; `-q`
        # silences the log lines too, as `dagu start -q` does (the controller's runners run
        # with it: their events are in run.log, not repeated in runner.err)
        log_stderr=args.parent is None and not args.quiet,
        inherited_secrets=read_inherited_secrets(sys.stdin) if args.inherit_secrets else (),
        progress=args.progress,
        no_color=args.no_color,
    )


def run(args: argparse.Namespace) -> int:
    """Start the run; returns the exit code."""
    from model.config import ConfigError

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("start", exc)
    return start(options(args), settings=settings)
