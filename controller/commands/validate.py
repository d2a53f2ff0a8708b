"""`dagloop validate FILE|NAME …`: check DAG files and report every problem, one per line.

A NAME is looked up in the DAGs directory (`<dags_dir>/NAME.yaml` or `.yml`); the base
config (`paths.baseConfig`, or `--base`) is merged under each DAG as a run would. A file
called `base.yaml`/`base.yml` is checked as a base config, not as a DAG.

Exit codes: 0 all valid, 1 any invalid, 2 usage error (no argument, file not found).
Output (`--format`): `text`, `FILE:LINE: field.path: what is wrong`; `json` (or `--json`),
`{"files": [{"file", "valid", "errors": [{"file", "line", "field", "message"}]}]}`; `github`,
GitHub Actions workflow commands (`::error file=F,line=N,title=FIELD::MESSAGE`), so a DAG
repository's CI shows each problem on its line of the pull request. Paths are printed as
given, so run it from the repository root (as pre-commit does: `.pre-commit-hooks.yaml`).
Dispatched by `controller.cli`; the checks themselves live in `model.loader`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.commands.common import EXIT_USAGE, add_common, add_json, fail, settings_from
from model.config import ConfigError
from model.loader import DagLoadError, LoadError, load_base, load_dag

_BASE_NAMES = frozenset({"base.yaml", "base.yml"})


def configure(parser: argparse.ArgumentParser) -> None:
    """The common options, the DAG arguments, `--json` and `--base`."""
    add_common(parser)
    parser.add_argument("dags", nargs="*", metavar="FILE|NAME", help="DAG files or names")
    add_json(parser, '{"files": [{"file", "valid", "errors": [...]}]}')
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default=None,
        help="text (default), json (as --json), or github (GitHub Actions annotations)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="FILE",
        help="base config merged under every DAG (default: paths.baseConfig)",
    )


def resolve_dag_path(target: str, dags_dir: Path) -> Path | None:
    """The file a FILE|NAME argument names: an existing path, else `<dags_dir>/NAME.y(a)ml`."""
    path = Path(target)
    if path.is_file():
        return path
    if "/" not in target and _joinable(target):
        for suffix in ("", ".yaml", ".yml"):
            candidate = dags_dir / f"{target}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _joinable(target: str) -> bool:
    """Whether a NAME argument may be joined to the DAGs directory without escaping it."""
    return bool(target) and target not in (".", "..") and "\0" not in target


def _check(path: Path, base: Mapping[str, Any] | None) -> list[LoadError]:
    try:
        if path.name in _BASE_NAMES:
            load_base(path)
        else:
            load_dag(path, base=base)
    except DagLoadError as exc:
        return exc.errors or [LoadError(str(path), None, "", "invalid (no detail)")]
    except Exception as exc:  # a loader bug must still be one line, never a traceback
        return [LoadError(str(path), None, "", f"internal error: {type(exc).__name__}: {exc}")]
    return []


def run(args: argparse.Namespace) -> int:
    """Validate every argument; print the problems; return 0, 1 or 2."""
    if not args.dags:
        usage = "no DAG given (usage: dagloop validate FILE|NAME ...)"
        return fail("validate", usage, EXIT_USAGE)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("validate", f"invalid configuration: {exc}", EXIT_USAGE)
    paths: list[Path] = []
    missing = False
    for target in args.dags:
        path = resolve_dag_path(target, settings.dags_dir)
        if path is None:
            print(f"dagloop validate: no such file or DAG: {target}", file=sys.stderr)
            missing = True
        else:
            paths.append(path)
    if missing:
        return 2

    results: list[tuple[str, list[LoadError]]] = []
    base_path = args.base if args.base is not None else settings.base_config
    if args.base is not None and not args.base.is_file():
        print(f"dagloop validate: no such base config: {args.base}", file=sys.stderr)
        return 2
    base: Mapping[str, Any] | None = None
    try:
        base = load_base(base_path)
    except DagLoadError as exc:
        # A broken base.yaml breaks every DAG: report it once, then check the DAGs alone.
        results.append((str(base_path), exc.errors))
    except Exception as exc:
        msg = f"internal error: {type(exc).__name__}: {exc}"
        results.append((str(base_path), [LoadError(str(base_path), None, "", msg)]))
    for path in paths:
        results.append((str(path), _check(path, base)))

    output = args.format or ("json" if args.json else "text")
    if output == "json":
        files = [
            {"file": file, "valid": not errors, "errors": [e.as_dict() for e in errors]}
            for file, errors in results
        ]
        print(json.dumps({"files": files}, indent=2))
    elif output == "github":
        for _, errors in results:
            for error in errors:
                print(github_annotation(error))
    else:
        for _, errors in results:
            for error in errors:
                print(_one_line(str(error)))
    return 1 if any(errors for _, errors in results) else 0


def _one_line(text: str) -> str:
    """Keep the one-line-per-error contract even when a message quotes a multi-line value."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def github_annotation(error: LoadError) -> str:
    """One GitHub Actions `::error` workflow command for `error` (values escaped as the
    runner expects: `%`, CR and LF everywhere, and `:` and `,` inside properties)."""
    props = [f"file={_escape_property(error.file)}"]
    if error.line is not None:
        props.append(f"line={error.line}")
    if error.field:
        props.append(f"title={_escape_property(error.field)}")
    return f"::error {','.join(props)}::{_escape_data(error.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
