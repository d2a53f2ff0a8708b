"""`dagloop scheduler`: run the control loop (controller only) until SIGTERM/SIGINT.

Waits as a standby while another controller holds the DAGU_HOME lock. Dispatched by
`controller.cli`; the loop itself is `controller.loop.controller.Controller`.
"""

from __future__ import annotations

import argparse

from controller.commands.common import add_common, fail, settings_from
from controller.logs import setup_process_logging
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """`-c/--config`, `--dagu-home`, `-d/--dags`."""
    add_common(parser)
    parser.add_argument("-d", "--dags", default=None, metavar="DIR", help="DAGs directory")


def run(args: argparse.Namespace) -> int:
    """Run the controller; exit 0 after a graceful stop, 1 on a configuration error."""
    try:
        settings = settings_from(args, overrides={"paths.dagsDir": args.dags})
    except ConfigError as exc:
        return fail("scheduler", exc)
    setup_process_logging(settings)
    from controller.loop.controller import run_controller

    return run_controller(settings)
