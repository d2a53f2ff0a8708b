"""One schema on both databases, made either way (Alembic or the embedded fast path), equal to
the models (`controller.store.tables`) in every column, type, default, index, constraint and
foreign key, and checked by every process: an older database is refused with the command that
fixes it. The records (`controller.store.records`) have the models' columns."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from controller.store.drift import differences
from controller.store.migrate import upgrade
from controller.store.pg import libpq_url
from controller.store.records import (
    InstanceRecord,
    RequestRecord,
    RunRecord,
    StepRecord,
    StoreError,
    WorkerRecord,
)
from controller.store.schema import SCHEMA_VERSION, STEPS, statements
from controller.store.store import Store
from controller.store.tables import METADATA
from model.config import load_settings
from model.status import RunStatus
from tests.helpers import run_cli

TABLES = (
    "meta",
    "runs",
    "steps",
    "requests",
    "instances",
    "run_totals",
    "skipped_ticks",
    "skipped_totals",
    "workers",
    "log_blobs",
    "alembic_version",
)


def sqlite_columns(path: Path) -> dict[str, list[tuple[str, bool]]]:
    with sqlite3.connect(path) as db:
        return {
            t: [(r[1], bool(r[3]) or bool(r[5])) for r in db.execute(f"PRAGMA table_info({t})")]
            for t in TABLES
        }


def pg_columns(url: str) -> dict[str, list[tuple[str, bool]]]:
    with psycopg.connect(libpq_url(url)) as db:
        return {
            t: [
                (name, nullable == "NO")
                for name, nullable in db.execute(
                    "SELECT column_name, is_nullable FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (t,),
                )
            ]
            for t in TABLES
        }


def sqlite_objects(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name")
        return [tuple(r) for r in rows]


def test_both_databases_have_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    Store(tmp_path / "state.db").close()
    lite = sqlite_columns(tmp_path / "state.db")
    assert all(lite[t] for t in TABLES)
    assert pg_columns(pg_url) == lite


def test_both_databases_match_the_sqlmodel_declaration(tmp_path: Path, pg_url: str) -> None:
    """`controller.store.tables` declares exactly the columns (and their nullability) both databases
    have, so the SQLModel classes can be trusted as the schema."""
    declared = {
        t: [(c.name, not c.nullable or c.primary_key) for c in METADATA.tables[t].columns]
        for t in METADATA.tables
    }
    Store(tmp_path / "state.db").close()
    for actual in (sqlite_columns(tmp_path / "state.db"), pg_columns(pg_url)):
        assert {t: cols for t, cols in actual.items() if t != "alembic_version"} == declared


def test_alembic_and_the_embedded_fast_path_make_the_same_file(tmp_path: Path) -> None:
    Store(tmp_path / "fast.db").close()
    upgrade(load_settings(env={"DAGU_DATA_DIR": str(tmp_path / "mig"), "DAGU_HOME": "/none"}))
    (migrated,) = (tmp_path / "mig").glob("*.db")
    assert sqlite_objects(migrated) == sqlite_objects(tmp_path / "fast.db")
    assert sqlite_columns(migrated) == sqlite_columns(tmp_path / "fast.db")


def _version_1_home(env: dict[str, str]) -> Path:
    """A DAGU_HOME whose database was made by dagloop 0.1 (schema 1, no Alembic stamp)."""
    data = Path(env["DAGU_HOME"]) / "data"
    data.mkdir(parents=True, exist_ok=True)
    db = data / "dagloop.db"
    with sqlite3.connect(db) as con:
        for statement in statements(STEPS["sqlite"][0]):
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        con.execute(
            "INSERT INTO runs (dag_name, run_id, status, created_at, updated_at) "
            "VALUES ('old', 'r0', 4, 1.0, 1.0)"
        )
    return db


def test_an_older_database_is_refused_until_migrated(dagu_env: dict[str, str]) -> None:
    db = _version_1_home(dagu_env)
    (Path(dagu_env["DAGU_HOME"]) / "dags" / "hello.yaml").write_text("steps:\n  - echo hi\n")
    code, _out, err = run_cli("start", "hello", env=dagu_env)
    assert code == 1
    older = (
        f"schema version 1 is older than this dagloop's ({SCHEMA_VERSION}); run `dagloop migrate`"
    )
    assert older in err
    assert "Traceback" not in err
    code, out, err = run_cli("migrate", env=dagu_env)
    assert code == 0, err
    assert out.strip() == f"{db}: schema version 1 -> {SCHEMA_VERSION}"
    with Store(db) as store:
        assert store.get_run("old", "r0").status == RunStatus.SUCCEEDED  # nothing lost
    code, _out, err = run_cli("start", "hello", env=dagu_env)
    assert code == 0, err
    code, out, _err = run_cli("migrate", env=dagu_env)
    assert code == 0 and out.strip().endswith(f"schema version {SCHEMA_VERSION}, up to date")


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store(db).close()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99 is newer than this dagloop's"):
        Store(db)


def test_postgres_without_schema_names_migrate(pg_server: object, dagu_env: dict[str, str]) -> None:
    url = pg_server.create_database()  # type: ignore[attr-defined]
    env = {**dagu_env, "DAGU_DATABASE_URL": url}
    code, _out, err = run_cli("status", "hello", env=env)
    assert code == 1
    assert "the database has no dagloop schema; run `dagloop migrate` first" in err
    assert "Traceback" not in err
    code, out, err = run_cli("migrate", env=env)
    assert code == 0, err
    assert f"schema version none -> {SCHEMA_VERSION}" in out
    (Path(dagu_env["DAGU_HOME"]) / "dags" / "hello.yaml").write_text("steps:\n  - echo hi\n")
    code, _out, err = run_cli("start", "hello", env=env)
    assert code == 0, err
    with Store(url) as store:
        assert store.get_run("hello", "latest").status == RunStatus.SUCCEEDED


def test_unreachable_postgres_is_one_clear_line(dagu_env: dict[str, str]) -> None:
    from tests.pg import free_port

    env = {
        **dagu_env,
        "DAGU_DATABASE_URL": f"postgresql+psycopg://u:secret@127.0.0.1:{free_port()}/x",
    }
    code, _out, err = run_cli("migrate", env=env)
    assert code == 1
    assert "127.0.0.1" in err and "secret" not in err and "Traceback" not in err


# --------------------------------------------------------------- the models are the schema


def _engine(location: Path | str) -> Any:
    url = location if isinstance(location, str) else f"sqlite:///{location}"
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)


def _differences(location: Path | str) -> list[str]:
    engine = _engine(location)
    try:
        with engine.connect() as connection:
            return [d.text for d in differences(connection)]
    finally:
        engine.dispose()


def _migrated(how: str, tmp_path: Path, pg_server: Any) -> Path | str:
    """A database at the current schema, made the way `how` says."""
    if how == "sqlite-fast-path":
        Store(tmp_path / "fast.db").close()
        return tmp_path / "fast.db"
    if how == "sqlite-alembic":
        upgrade(load_settings(env={"DAGU_DATA_DIR": str(tmp_path), "DAGU_HOME": "/none"}))
        (db,) = tmp_path.glob("*.db")
        return db
    url: str = pg_server.create_database()
    upgrade(load_settings(env={"DAGU_DATABASE_URL": url, "DAGU_HOME": "/none"}))
    return url


@pytest.mark.parametrize("how", ["sqlite-fast-path", "sqlite-alembic", "postgresql"])
def test_a_migrated_database_matches_the_models_exactly(
    how: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Alembic's compare_metadata and the inspector find no difference between the models and
    the DDL as run: columns, types, nullability, defaults, indexes (with their predicates),
    unique constraints, foreign keys and their ON DELETE."""
    pg_server = request.getfixturevalue("pg_server") if how == "postgresql" else None
    assert _differences(_migrated(how, tmp_path, pg_server)) == []


def _dump(location: Path | str) -> dict[str, Any]:
    """Everything the inspector reads back of the dagloop tables, in a comparable form."""
    engine = _engine(location)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            dump: dict[str, Any] = {}
            for table in sorted(METADATA.tables):
                pk = inspector.get_pk_constraint(table)["constrained_columns"]
                dump[table] = {
                    # SQLite lets a non-INTEGER key hold NULL unless told otherwise: a key's
                    # nullability is PostgreSQL's business (`drift` says why).
                    "columns": [
                        (
                            c["name"],
                            str(c["type"]),
                            c["nullable"] and c["name"] not in pk,
                            _normal_default(c["default"]),
                            bool(c.get("identity")),
                        )
                        for c in inspector.get_columns(table)
                    ],
                    "pk": pk,
                    "indexes": sorted(
                        (
                            i["name"],
                            tuple(i["column_names"]),
                            bool(i["unique"]),
                            _where(i.get("dialect_options", {})),
                        )
                        for i in inspector.get_indexes(table)
                        if not i.get("duplicates_constraint")
                        and not str(i["name"]).startswith("sqlite_autoindex")
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                    ),
                    "fks": sorted(_fks(connection, table)),
                }
            return dump
    finally:
        engine.dispose()


def _normal_default(default: str | None) -> str | None:
    return None if default is None else default.split("::")[0].strip("()")


def _where(options: dict[str, Any]) -> str:
    where = options.get("sqlite_where", options.get("postgresql_where"))
    return "" if where is None else str(where).strip("()").lower()


def _fks(connection: Any, table: str) -> list[tuple[Any, ...]]:
    if connection.dialect.name == "sqlite":  # the inspector misses an inline ON DELETE here
        rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list('{table}')").fetchall()
        return [((r[3],), r[2], (r[4],), r[6].upper()) for r in rows]
    return [
        (
            tuple(f["constrained_columns"]),
            f["referred_table"],
            tuple(f["referred_columns"]),
            f["options"].get("ondelete", "NO ACTION").upper(),
        )
        for f in inspect(connection).get_foreign_keys(table)
    ]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_models_create_the_database_the_migrations_make(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`METADATA.create_all` on an empty database gives what the hand-written DDL gives: the
    models say everything the DDL says (the comparison the other way round)."""
    if dialect == "sqlite":
        migrated: Path | str = _migrated("sqlite-fast-path", tmp_path, None)
        made: Path | str = tmp_path / "from-models.db"
    else:
        pg_server = request.getfixturevalue("pg_server")
        migrated = _migrated("postgresql", tmp_path, pg_server)
        made = pg_server.create_database()
    engine = _engine(made)
    try:
        METADATA.create_all(engine)
    finally:
        engine.dispose()
    assert _dump(made) == _dump(migrated)
    assert all(_dump(made)[t]["columns"] for t in METADATA.tables)


RECORDS = {
    "runs": RunRecord,
    "steps": StepRecord,
    "requests": RequestRecord,
    "instances": InstanceRecord,
    "workers": WorkerRecord,
}
# Columns a record holds decoded from JSON text (their Python type is not the column's).
JSON_COLUMNS = {"params", "worker_selector", "spec", "outputs", "children", "args", "labels"}


@pytest.mark.parametrize("table", sorted(RECORDS))
def test_each_record_has_the_columns_of_its_table(table: str) -> None:
    """Same fields in column order, and a field may be None exactly where the column is
    nullable (JSON columns aside: `worker_selector` reads `{}` as None)."""
    record = RECORDS[table]
    columns = METADATA.tables[table].columns
    assert [f.name for f in fields(record)] == [c.name for c in columns]
    hints = get_type_hints(record)
    for column in columns:
        if column.name in JSON_COLUMNS:
            continue
        may_be_none = type(None) in get_args(hints[column.name])
        nullable = bool(column.nullable) and not column.primary_key
        assert may_be_none == nullable, column.name
