"""The runner start-up shortcuts: the fork-server's prebuilt `start` arguments, the store's
skipped DDL. Each must give exactly what the slow path gives."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pytest

from controller.commands import start
from controller.spawn import forkserver
from controller.spawn.forkserver import fast_start_args, start_argv
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
def test_fast_args_equal_argparse(argv: list[str]) -> None:
    parser = _parser()
    defaults = vars(parser.parse_args(["f.yaml"]))
    fast = fast_start_args(argv, defaults)
    assert fast is not None
    assert vars(fast) == vars(parser.parse_args(argv[1:]))


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "-q", "--run-id", "-x", "f.yaml"],  # a value argparse reads as an option
        ["start", "-q", "--run-id", "r1", "-p", "A=1", "f.yaml"],
        ["start", "--run-id", "r1", "-q", "f.yaml"],
        ["start", "f.yaml"],
        ["status", "-q", "--run-id", "r1", "f.yaml"],
    ],
)
def test_other_shapes_go_through_argparse(argv: list[str]) -> None:
    defaults = vars(_parser().parse_args(["f.yaml"]))
    assert fast_start_args(argv, defaults) is None
    assert fast_start_args(start_argv("r1", "f.yaml", None), None) is None


def test_server_warm_up_builds_the_start_template() -> None:
    forkserver._warm_caches()
    assert forkserver._start_defaults == vars(_parser().parse_args(["f.yaml"]))


def _objects(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name FROM sqlite_master").fetchall())


def test_reopen_at_the_current_version_runs_no_ddl(tmp_path: Path) -> None:
    """A runner's open is one read of `meta`: nothing of the schema script runs again."""
    db = tmp_path / "state.db"
    Store(db).close()
    assert ("table", "runs") in _objects(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX runs_status")
    Store(db).close()
    assert ("index", "runs_status") not in _objects(db)
