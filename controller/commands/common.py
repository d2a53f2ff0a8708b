"""What every `dagloop` verb shares: the common options (`-c/--config`, `--dagu-home`), `-q`,
`--progress`/`--no-color` and `--json` defined once with their help text, settings from those
options, and printing a JSON document or a one-line error.

Called only by `controller.commands.*`. `dagloop start` imports this module, so it imports
nothing that the start path does not load anyway (`model.config` only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.config import Settings, load_settings

# The process exit codes of every verb (docs/cli.md): 0 done, 1 failed or refused, 2 usage.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_common(parser: argparse.ArgumentParser) -> None:
    """`-c/--config FILE` and `--dagu-home DIR`, taken by every verb.

    `--config` stays a string (not a `Path`): the fork-server's prepared runners compare it
    with the config they were prepared for, which they received as text.
    """
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help="config file (default: $DAGU_CONFIG, else $DAGU_HOME/config.yaml)",
    )
    parser.add_argument(
        "--dagu-home",
        default=None,
        metavar="DIR",
        help="DAGU_HOME for this command (default: $DAGU_HOME, else ~/.config/dagu)",
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """`-q/--quiet`: no progress or confirmation lines on stdout."""
    parser.add_argument("-q", "--quiet", action="store_true", help="print less")


def add_progress(parser: argparse.ArgumentParser) -> None:
    """`--progress {auto,always,never}` and `--no-color`: how a run in the foreground is shown
    (`controller.engine.progress.choose_display`)."""
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="live view of the run: auto (on a terminal), always, never (plain lines)",
    )
    parser.add_argument(
        "--no-color", action="store_true", help="no colours (also: NO_COLOR set, TERM=dumb)"
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """`--json`: print one JSON document (`what` it holds) on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON document")


def settings_from(
    args: argparse.Namespace, *, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings for a command from the common options and the verb's own `overrides` (dotted
    config keys; `None` values ignored); raises `ConfigError`."""
    merged: dict[str, object] = dict(overrides or {})
    if getattr(args, "dagu_home", None):
        merged["home"] = args.dagu_home
    config = getattr(args, "config", None)
    return load_settings(config_file=Path(config) if config else None, overrides=merged)


def print_json(doc: Any) -> None:
    """One JSON document on stdout (non-ASCII kept as is)."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")


def fail(verb: str, message: object, code: int = EXIT_FAILED) -> int:
    """Print `dagloop VERB: MESSAGE` on stderr, one line; return the exit `code`."""
    print(f"dagloop {verb}: {message}", file=sys.stderr)
    return code
