"""`dagloop config`: print the effective configuration and where each value comes from.

One row per key: value (secrets as `*****`) and source (`default`, `file`, `env` or `cli`).
Dispatched by `controller.cli`; the loading and masking live in `model.config`.
"""

from __future__ import annotations

import argparse
import json

from controller.commands.common import add_common, add_json, fail, settings_from
from model.config import ConfigError, describe_settings


def configure(parser: argparse.ArgumentParser) -> None:
    """The common options and `--json`."""
    add_common(parser)
    add_json(parser, 'a list of {"key", "value", "source"} objects')


def run(args: argparse.Namespace) -> int:
    """Print the configuration; exit 0, or 1 with the error on stderr if it is invalid."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("config", exc)
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
