"""Small helpers shared by the controller's commands (`enqueue`, `dequeue`, `plan`,
`cleanup`, `scheduler`): settings from the common options, and finding a DAG by name or file.

Called only by `controller.commands.*`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import Settings, load_settings


def add_common(parser: argparse.ArgumentParser) -> None:
    """`-c/--config` and `--dagu-home`."""
    parser.add_argument("-c", "--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--dagu-home", default=None, metavar="DIR")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings for a command; raises `ConfigError`."""
    overrides: dict[str, object] = {}
    if getattr(args, "dagu_home", None):
        overrides["home"] = args.dagu_home
    return load_settings(config_file=args.config, overrides=overrides)


def dag_file(name_or_file: str, dags_dir: Path) -> Path | None:
    """`NAME` (looked up as `<dags_dir>/NAME.yaml|.yml`) or a path; None if not found."""
    p = Path(name_or_file).expanduser()
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.resolve()
    for ext in (".yaml", ".yml"):
        candidate = dags_dir / f"{name_or_file}{ext}"
        if candidate.is_file():
            return candidate.resolve()
    return None
