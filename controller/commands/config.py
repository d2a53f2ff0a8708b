"""`dagloop config`: print the effective configuration and where each value comes from.

One row per key: value (secrets as `*****`) and source (`default`, `file`, `env` or `cli`).
Dispatched by `controller.cli`; the loading and masking live in `model.config`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.config import ConfigError, describe_settings, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `--json` and `-c/--config`."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="config file (default: $DAGU_CONFIG or $DAGU_HOME/config.yaml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print a JSON list of {"key", "value", "source"} objects',
    )


def run(args: argparse.Namespace) -> int:
    """Print the configuration; exit 0, or 1 with the error on stderr if it is invalid."""
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"dagloop config: {exc}", file=sys.stderr)
        return 1
    rows = describe_settings(settings)
    if args.json:
        print(json.dumps([{"key": k, "value": v, "source": s} for k, v, s in rows], indent=2))
        return 0
    key_width = max(len("KEY"), *(len(k) for k, _, _ in rows))
    value_width = max(len("VALUE"), *(len(v) for _, v, _ in rows))
    lines = [f"{'KEY'.ljust(key_width)}  {'VALUE'.ljust(value_width)}  SOURCE"]
    lines += [f"{k.ljust(key_width)}  {v.ljust(value_width)}  {s}" for k, v, s in rows]
    print("\n".join(lines))
    return 0
