"""The `dagloop` command line: a thin dispatcher over `controller.commands.*`.

Only the module of the requested verb is imported, so `dagloop start` does not pay for the
API server or the ORM at start-up. Exit codes (the same for every verb, docs/cli.md): 0 done,
1 failed or refused, 2 usage error (argparse's convention), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from controller.store.records import StoreError
from model import __version__

# verb -> (module under controller.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("start", "run a DAG now, in the foreground"),
    "enqueue": ("enqueue", "queue a run for the controller to start"),
    "dequeue": ("dequeue", "remove a queued run"),
    "stop": ("stop", "stop running runs of a DAG"),
    "restart": ("restart", "stop a DAG's run and start it again"),
    "retry": ("retry", "retry a run under the same run id"),
    "status": ("status", "show the status of a run"),
    "dry": ("dry", "show what a run would do, without running it"),
    "validate": ("validate", "validate DAG files"),
    "cleanup": ("cleanup", "delete old run history and logs"),
    "plan": ("plan", "show what the controller would do now, and why"),
    "scheduler": ("scheduler", "run the controller (control loop) only"),
    "server": ("server", "run the read-only API server only"),
    "start-all": ("start_all", "run the controller and the API server"),
    "worker": ("worker", "run runs handed out by the controller, on this host"),
    "config": ("config", "print the effective configuration and where each value comes from"),
    "migrate": ("migrate", "bring the state database to this version's schema"),
    "version": ("version", "print the version"),
}


class _Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(verb: str) -> _Command:
    module_name, _ = COMMANDS[verb]
    return cast(_Command, importlib.import_module(f"controller.commands.{module_name}"))


EXIT_CODES_EPILOG = (
    "Exit codes: 0 done, 1 failed or refused, 2 usage error. "
    "Every verb, its options and its --json output: docs/cli.md."
)


def _usage() -> str:
    width = max(len(v) for v in COMMANDS)
    lines = [
        "usage: dagloop [--version] COMMAND [ARGS...]",
        "",
        "Commands:",
        *(f"  {verb.ljust(width)}  {help_}" for verb, (_, help_) in COMMANDS.items()),
        "",
        "Run 'dagloop COMMAND --help' for the options of a command.",
        EXIT_CODES_EPILOG,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dagloop` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # a usage error: usage on stderr, exit 2 (as argparse does)
        print(_usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("--version", "-V"):
        print(f"dagloop {__version__}")
        return 0
    verb = args[0]
    if verb not in COMMANDS:
        print(f"dagloop: unknown command {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    command = _load(verb)
    parser = argparse.ArgumentParser(
        prog=f"dagloop {verb}", description=COMMANDS[verb][1], epilog=EXIT_CODES_EPILOG
    )
    command.configure(parser)
    try:
        namespace = parser.parse_args(args[1:])
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return command.run(namespace)
    except KeyboardInterrupt:
        return 130
    except StoreError as exc:
        # The database stayed unreachable past `database.waitSeconds`, or refused the write:
        # one clear line and a non-zero exit, never a traceback; a refused write kept
        # nothing of its transaction.
        print(f"dagloop {verb}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `dagloop … | head`: the reader left; not an error worth a traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
