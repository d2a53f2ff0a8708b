"""`dagloop migrate`: bring the state database to this dagloop's schema (Alembic), or with
`--check` only compare it with the schema's models and report every difference.

Works on the embedded SQLite file and on PostgreSQL (`DAGU_DATABASE_URL`) alike; safe to run
again (a database already at the current version is left as it is). Every other dagloop process
refuses a database whose schema is older than its own and names this command. `--json` prints
what was done, or the differences, as one JSON object for scripts. Dispatched by
`controller.cli`.

Exit codes: 0 migrated (or, with `--check`, the database matches); 1 the database cannot be
reached or migrated (or, with `--check`, differs: one line per difference on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from controller.commands.common import add_common, settings_from
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """The common options (`--config`, …), `--check` and `--json`."""
    add_common(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the database with the models and change nothing; exit 1 if they differ",
    )
    try:
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    except argparse.ArgumentError:
        pass  # already one of the common options


def run(args: argparse.Namespace) -> int:
    """Migrate, or check; the exit code."""
    from controller.store.pg import redact_url

    as_json = bool(getattr(args, "json", False))
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return _fail(None, str(exc), as_json=as_json)
    where = redact_url(settings.database_url) if settings.database_url else str(settings.db_path)
    try:
        if args.check:
            return _check(settings, where, as_json=as_json)
        return _upgrade(settings, where, as_json=as_json)
    except Exception as exc:  # SQLAlchemy/Alembic/driver/OS errors: one line, never a traceback
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not message.startswith(where):
            message = f"{where}: {message}"
        return _fail(where, message, as_json=as_json)


def _upgrade(settings: Any, where: str, *, as_json: bool) -> int:
    from controller.store.migrate import upgrade

    before, after = upgrade(settings)
    if as_json:
        report = {"database": where, "from": before, "to": after, "migrated": before != after}
        print(json.dumps(report))
    elif before == after:
        print(f"{where}: schema version {after}, up to date")
    else:
        print(f"{where}: schema version {before or 'none'} -> {after}")
    return 0


def _check(settings: Any, where: str, *, as_json: bool) -> int:
    from controller.store.migrate import check

    found = check(settings)
    if as_json:
        report = {
            "database": where,
            "matches": not found,
            "differences": [
                {"kind": d.kind, "table": d.table, "name": d.name, "text": d.text} for d in found
            ],
        }
        print(json.dumps(report))
    elif not found:
        print(f"{where}: matches the models")
    else:
        for difference in found:
            print(difference.text)
        print(
            f"dagloop migrate --check: {where}: {len(found)} difference(s) from the models",
            file=sys.stderr,
        )
    return 1 if found else 0


def _fail(where: str | None, message: str, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"database": where, "error": message}))
    print(f"dagloop migrate: {message}", file=sys.stderr)
    return 1
