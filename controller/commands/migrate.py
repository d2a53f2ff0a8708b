"""`dagloop migrate`: bring the state database to this dagloop's schema (Alembic).

Works on the embedded SQLite file and on PostgreSQL (`DAGU_DATABASE_URL`) alike; safe to run
again (a database already at the current version is left as it is). Every other dagloop process
refuses a database whose schema is older than its own and names this command. Dispatched by
`controller.cli`.
"""

from __future__ import annotations

import argparse
import sys

from controller.commands.common import add_common, settings_from
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """The common options (`--config`, …) only."""
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    """Migrate; exit 0, 1 when the database cannot be reached or migrated."""
    from controller.store.migrate import upgrade
    from controller.store.pg import redact_url
    from controller.store.records import StoreError

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop migrate: {exc}", file=sys.stderr)
        return 1
    where = redact_url(settings.database_url) if settings.database_url else str(settings.db_path)
    try:
        before, after = upgrade(settings)
    except (StoreError, OSError) as exc:
        print(f"dagloop migrate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # SQLAlchemy/Alembic/driver errors: one line, never a traceback
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"dagloop migrate: {where}: {message}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{where}: schema version {after}, up to date")
    else:
        print(f"{where}: schema version {before or 'none'} -> {after}")
    return 0
