"""Schema migrations of the state database with Alembic, for SQLite and PostgreSQL alike.

`upgrade` brings a database to this dagloop's schema (`dagloop migrate`); each Alembic revision
in `controller/store/migrations/versions/` applies the `controller.store.schema` step of the same
number through `apply_schema_step`, which also records the version in `meta['schema_version']`
— what every process checks when it opens the store (`controller.store.store.Store`). `check`
compares a database with the schema's models (`controller.store.tables`) without changing it
(`dagloop migrate --check`, see `controller.store.drift`).

SQLAlchemy and Alembic are imported only here and in `drift`, never on the runner's hot path.
Called by `controller.commands.migrate` and the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.store.schema import REVISIONS, SCHEMA_VERSION, STEPS, statements

if TYPE_CHECKING:
    from controller.store.drift import Difference

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def sqlalchemy_url(settings: Any) -> str:
    """The SQLAlchemy URL of the settings' database (psycopg 3 for PostgreSQL)."""
    url = settings.database_url
    if url:
        scheme, sep, rest = str(url).partition("://")
        return f"postgresql+psycopg://{rest}" if sep and scheme.startswith("postgres") else url
    return f"sqlite:///{settings.db_path}"


def upgrade(settings: Any) -> tuple[int | None, int]:
    """Migrate the settings' database to the current schema; (version before, after).

    A new SQLite file is created first (as any dagloop process would); PostgreSQL needs the
    database to exist (created by its administrator) and a role allowed to create tables.
    """
    from alembic import command
    from alembic.config import Config

    from controller.store.store import Store

    if not settings.database_url:
        Path(settings.db_path).parent.mkdir(parents=True, exist_ok=True)
    before = schema_version(settings)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a `%` in a password must be doubled.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(settings).replace("%", "%%"))
    command.upgrade(config, "head")
    with Store(settings.database_url or settings.db_path, role="migrate") as store:
        after = store.schema_version()
    assert after == SCHEMA_VERSION, after
    return before, after


def check(settings: Any) -> list[Difference]:
    """How the settings' database differs from the models (`controller.store.drift`); [] when
    it matches. Changes nothing: a SQLite file is opened read-only, and a missing one is one
    difference. Raises SQLAlchemy's errors when the database cannot be reached."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from controller.store.drift import Difference, differences

    url = sqlalchemy_url(settings)
    if not settings.database_url:
        path = Path(settings.db_path)
        if not path.exists():
            text = f"no database at {path}: run `dagloop migrate`"
            return [Difference("missing_database", "", "", text)]
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return differences(connection)
    finally:
        engine.dispose()


def schema_version(settings: Any) -> int | None:
    """The schema version of the settings' database; None when it has none (or no file)."""
    from controller.store.store import Store

    if not settings.database_url and not Path(settings.db_path).exists():
        return None
    location = settings.database_url or settings.db_path
    with Store(location, role="migrate", check_schema=False) as store:
        return store.schema_version()


def apply_schema_step(revision: str) -> None:
    """Run `controller.store.schema`'s step for `revision` on Alembic's connection and record the
    new version. Called by the revision files only."""
    from alembic import op

    index = REVISIONS.index(revision)
    bind = op.get_bind()
    dialect = bind.dialect.name
    script = STEPS[dialect][index]
    if dialect == "sqlite":
        for statement in statements(script):
            bind.exec_driver_sql(statement)
    else:
        bind.exec_driver_sql(script)
    bind.exec_driver_sql(
        f"INSERT INTO meta (key, value) VALUES ('schema_version', '{index + 1}') "
        f"ON CONFLICT (key) DO UPDATE SET value = '{index + 1}'"
    )
