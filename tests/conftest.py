"""Pytest configuration shared by every tier: make `tests.helpers` importable."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# `from tests.helpers import ...` works whether pytest runs from the root or elsewhere.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


import pytest  # noqa: E402

from tests.helpers import dagu_home  # noqa: E402
from tests.pg import PostgresServer, postgres_server  # noqa: E402


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at its end are killed and reaped."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def dagu_env(tmp_path: Path) -> dict[str, str]:
    """Subprocess environment with an isolated DAGU_HOME under tmp_path (see `dagu_home`)."""
    return dagu_home(tmp_path)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (skips when PostgreSQL is absent;
    `.ci/run` installs it, so CI always runs these tests)."""
    with postgres_server() as server:
        if server is None:
            pytest.skip("PostgreSQL is not installed (Debian package `postgresql`)")
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh database on the session's server, migrated to the current schema."""
    from controller.store.migrate import upgrade
    from model.config import load_settings

    url = pg_server.create_database()
    upgrade(load_settings(env={"DAGU_DATABASE_URL": url, "DAGU_HOME": "/nonexistent"}))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Each store test runs twice: on a new SQLite file and on a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    url: str = request.getfixturevalue("pg_url")
    return url
