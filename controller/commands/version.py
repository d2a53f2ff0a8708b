"""`dagloop version`: print the version."""

from __future__ import annotations

import argparse

from model import __version__


def configure(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print the version and exit 0."""
    print(f"dagloop {__version__}")
    return 0
