"""`dagloop scheduler`: run the control loop (controller only) until SIGTERM/SIGINT.

Waits as a standby while another controller holds the DAGU_HOME lock. Dispatched by
`controller.cli`; the loop itself is `controller.loop.controller.Controller`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.logs import setup_process_logging
from model.config import ConfigError, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    """`-c/--config`, `--dagu-home`, `-d/--dags`."""
    parser.add_argument("-c", "--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--dagu-home", default=None, metavar="DIR")
    parser.add_argument("-d", "--dags", default=None, metavar="DIR", help="DAGs directory")


def run(args: argparse.Namespace) -> int:
    """Run the controller; exit 0 after a graceful stop, 1 on a configuration error."""
    overrides: dict[str, object] = {}
    if args.dagu_home:
        overrides["home"] = args.dagu_home
    if args.dags:
        overrides["paths.dagsDir"] = args.dags
    try:
        settings = load_settings(config_file=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"dagloop scheduler: {exc}", file=sys.stderr)
        return 1
    setup_process_logging(settings)
    from controller.loop.controller import run_controller

    return run_controller(settings)
