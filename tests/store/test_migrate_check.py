"""`dagloop migrate --check` and `--json`, driven as the real command on SQLite and PostgreSQL:
exit 0 when the database matches the models, 1 with one line per difference when it does not
(a database damaged on purpose, or at an older schema version), never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controller.store.pg import libpq_url
from controller.store.schema import HEAD_REVISION, SCHEMA_VERSION, STEPS, statements
from tests.helpers import run_cli


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, dagu_env: dict[str, str]) -> dict[str, str]:
    """A home whose database (SQLite file or a new PostgreSQL database) has not been made."""
    if request.param == "sqlite":
        return dagu_env
    url: str = request.getfixturevalue("pg_server").create_database()
    return {**dagu_env, "DAGU_DATABASE_URL": url}


def execute(env: dict[str, str], *sql: str) -> None:
    """Run SQL on the home's database behind dagloop's back."""
    if "DAGU_DATABASE_URL" in env:
        with psycopg.connect(libpq_url(env["DAGU_DATABASE_URL"]), autocommit=True) as con:
            for statement in sql:
                con.execute(statement)
        return
    with sqlite3.connect(Path(env["DAGU_HOME"]) / "data" / "dagloop.db") as con:
        for statement in sql:
            con.execute(statement)


def check(env: dict[str, str], *flags: str) -> tuple[int, str, str]:
    code, out, err = run_cli("migrate", "--check", *flags, env=env)
    assert "Traceback" not in out + err
    return code, out, err


def test_a_migrated_database_passes_the_check(env: dict[str, str]) -> None:
    code, out, err = run_cli("migrate", env=env)
    assert code == 0, err
    code, out, err = check(env)
    assert (code, err) == (0, "")
    assert out.strip().endswith(": matches the models")
    code, out, _err = check(env, "--json")
    assert code == 0
    assert json.loads(out)["matches"] is True and json.loads(out)["differences"] == []


def test_the_check_changes_nothing_and_reports_a_missing_database(
    env: dict[str, str],
) -> None:
    code, out, _err = check(env)
    assert code == 1
    if "DAGU_DATABASE_URL" in env:
        assert "missing table runs" in out.splitlines()
        assert any(line.startswith("schema version none") for line in out.splitlines())
    else:
        assert out.startswith("no database at ") and "run `dagloop migrate`" in out
        assert not (Path(env["DAGU_HOME"]) / "data" / "dagloop.db").exists()


DAMAGE: dict[str, tuple[list[str], list[str], str]] = {
    # name: (SQL run on both dialects, lines expected, JSON kind of the first line)
    "dropped index": (
        ["DROP INDEX runs_status_created"],
        ["missing index runs_status_created on runs"],
        "missing_index",
    ),
    "changed partial index": (
        [
            "DROP INDEX runs_finished",
            "CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NULL",
        ],
        [
            "index runs_finished on runs has WHERE finished_at is null, "
            "expected finished_at is not null"
        ],
        "index_predicate",
    ),
    "extra column and index": (
        ["ALTER TABLE workers ADD COLUMN zone TEXT", "CREATE INDEX workers_zone ON workers (zone)"],
        ["unexpected column zone on workers", "unexpected index workers_zone on workers"],
        "unexpected_column",
    ),
    "dropped table": (
        ["DROP TABLE skipped_totals"],
        ["missing table skipped_totals"],
        "missing_table",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_database_fails_the_check_one_line_per_difference(
    damage: str, env: dict[str, str]
) -> None:
    sql, lines, kind = DAMAGE[damage]
    assert run_cli("migrate", env=env)[0] == 0
    execute(env, *sql)
    code, out, err = check(env)
    assert code == 1
    assert sorted(out.splitlines()) == sorted(lines)
    assert f"{len(lines)} difference(s) from the models" in err
    code, out, _err = check(env, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["matches"] is False
    assert sorted(d["text"] for d in report["differences"]) == sorted(lines)
    assert kind in {d["kind"] for d in report["differences"]}


def test_a_foreign_key_without_its_cascade_is_reported_on_postgres(
    pg_server: Any, dagu_env: dict[str, str]
) -> None:
    env = {**dagu_env, "DAGU_DATABASE_URL": pg_server.create_database()}
    assert run_cli("migrate", env=env)[0] == 0
    execute(
        env,
        "ALTER TABLE steps DROP CONSTRAINT steps_run_fkey",
        "ALTER TABLE steps ADD CONSTRAINT steps_run_fkey FOREIGN KEY (run) REFERENCES runs(id)",
    )
    code, out, _err = check(env)
    assert code == 1
    assert "missing foreign key steps(run) -> runs(id) ON DELETE CASCADE" in out.splitlines()


def test_a_foreign_key_without_its_cascade_is_reported_on_sqlite(
    dagu_env: dict[str, str],
) -> None:
    """SQLite cannot alter a constraint: the table is rebuilt, as a careless tool would."""
    assert run_cli("migrate", env=dagu_env)[0] == 0
    with sqlite3.connect(Path(dagu_env["DAGU_HOME"]) / "data" / "dagloop.db") as con:
        (ddl,) = con.execute("SELECT sql FROM sqlite_master WHERE name='log_blobs'").fetchone()
        con.executescript(
            "DROP INDEX log_blobs_run; ALTER TABLE log_blobs RENAME TO old; "
            + ddl.replace(" ON DELETE CASCADE", "")
            + "; DROP TABLE old; CREATE INDEX log_blobs_run ON log_blobs (run);"
        )
    code, out, _err = check(dagu_env)
    assert code == 1
    assert out.splitlines() == [
        "foreign key log_blobs(run) -> runs(id) ON DELETE CASCADE has ON DELETE NO ACTION"
    ]


def _version_1(env: dict[str, str]) -> None:
    """Make the home's database as dagloop 0.1 did (schema 1, stamped by Alembic)."""
    if "DAGU_DATABASE_URL" in env:
        with psycopg.connect(libpq_url(env["DAGU_DATABASE_URL"]), autocommit=True) as con:
            con.execute(STEPS["postgresql"][0])
            con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
            con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            con.execute("INSERT INTO alembic_version VALUES ('0001')")
        return
    data = Path(env["DAGU_HOME"]) / "data"
    data.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(data / "dagloop.db") as con:
        for statement in statements(STEPS["sqlite"][0]):
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")


def test_an_older_schema_version_is_reported_then_migrated(env: dict[str, str]) -> None:
    _version_1(env)
    code, out, _err = check(env)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("schema version 1 (revision ")
    expected = f"expected {SCHEMA_VERSION} (revision {HEAD_REVISION}): run `dagloop migrate`"
    assert lines[0].endswith(expected)
    for line in (
        "missing table workers",
        "missing table log_blobs",
        "missing column dispatched_at on runs",
        "missing index runs_dispatch on runs",
        "missing column revision_commit on runs",
    ):
        assert line in lines
    code, out, err = run_cli("migrate", "--json", env=env)
    assert code == 0, err
    report = json.loads(out)
    assert {k: report[k] for k in ("from", "to", "migrated")} == {
        "from": 1,
        "to": SCHEMA_VERSION,
        "migrated": True,
    }
    code, out, _err = run_cli("migrate", "--json", env=env)
    assert json.loads(out)["migrated"] is False
    assert check(env)[0] == 0


def test_an_unreachable_database_is_one_json_error(dagu_env: dict[str, str]) -> None:
    from tests.pg import free_port

    url = f"postgresql+psycopg://u:secret@127.0.0.1:{free_port()}/x"
    env = {**dagu_env, "DAGU_DATABASE_URL": url}
    for args in (("migrate", "--json"), ("migrate", "--check", "--json")):
        code, out, err = run_cli(*args, env=env)
        assert code == 1
        report = json.loads(out)
        assert "127.0.0.1" in report["error"] and "secret" not in out + err
        assert "Traceback" not in err
