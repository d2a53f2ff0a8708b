"""The runner start-up shortcuts: the fork-server's children reading `start` arguments without
argparse, the store's skipped DDL. Each must give exactly what the slow path gives."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pytest

from controller.commands import start
from controller.spawn.child import start_options
from controller.spawn.protocol import parse_start_argv, start_argv
from controller.store.store import Store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dagloop start")
    start.configure(parser)
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        start_argv("0193-abc_1", "/d/dags/a b.yaml", None),
        start_argv("r1", "/d/dags/x.yml", "/etc/dagloop/config.yaml"),
    ],
)
def test_child_options_equal_the_commands(argv: list[str]) -> None:
    fast = start_options(argv)
    assert fast is not None
    assert fast == start.options(_parser().parse_args(argv[1:]))


def test_start_argv_reads_back() -> None:
    assert parse_start_argv(start_argv("r1", "/d/x.yml", "c.yaml")) == ("r1", "/d/x.yml", "c.yaml")
    assert parse_start_argv(start_argv("r1", "/d/x.yml", None)) == ("r1", "/d/x.yml", None)


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "-q", "--run-id", "-x", "f.yaml"],  # a value argparse reads as an option
        ["start", "-q", "--run-id", "r1", "-p", "A=1", "f.yaml"],
        ["start", "--run-id", "r1", "-q", "f.yaml"],
        ["start", "f.yaml"],
        ["status", "-q", "--run-id", "r1", "f.yaml"],
        "start -q --run-id r1 f.yaml",
    ],
)
def test_other_shapes_are_not_runner_arguments(argv: list[str]) -> None:
    assert parse_start_argv(argv) is None
    assert start_options(argv) is None


def _objects(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name FROM sqlite_master").fetchall())


def test_reopen_at_the_current_version_runs_no_ddl(tmp_path: Path) -> None:
    """A runner's open is one read of `meta`: nothing of the schema script runs again."""
    db = tmp_path / "state.db"
    Store(db).close()
    assert ("table", "runs") in _objects(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX runs_status_created")
    Store(db).close()
    assert ("index", "runs_status_created") not in _objects(db)
