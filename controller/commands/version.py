"""`dagloop version [--json]`: print the version. Dispatched by `controller.cli`."""

from __future__ import annotations

import argparse

from controller.commands.common import add_json, print_json
from model import __version__


def configure(parser: argparse.ArgumentParser) -> None:
    """`--json` only: the version needs no settings."""
    add_json(parser, '{"version"}')


def run(args: argparse.Namespace) -> int:
    """Print the version and exit 0."""
    if args.json:
        print_json({"version": __version__})
    else:
        print(f"dagloop {__version__}")
    return 0
