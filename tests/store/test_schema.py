"""One schema on both databases, made either way (Alembic or the embedded fast path), and
checked by every process: an older database is refused with the command that fixes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from controller.store.migrate import upgrade
from controller.store.pg import libpq_url
from controller.store.records import StoreError
from controller.store.schema import STEPS, statements
from controller.store.store import Store
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
    from controller.store.tables import METADATA

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
    assert "schema version 1 is older than this dagloop's (2); run `dagloop migrate`" in err
    assert "Traceback" not in err
    code, out, err = run_cli("migrate", env=dagu_env)
    assert code == 0, err
    assert out.strip() == f"{db}: schema version 1 -> 2"
    with Store(db) as store:
        assert store.get_run("old", "r0").status == RunStatus.SUCCEEDED  # nothing lost
    code, _out, err = run_cli("start", "hello", env=dagu_env)
    assert code == 0, err
    code, out, _err = run_cli("migrate", env=dagu_env)
    assert code == 0 and out.strip().endswith("schema version 2, up to date")


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
    assert "schema version none -> 2" in out
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
