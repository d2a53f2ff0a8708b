"""A cluster on one machine: a DAGU_HOME per process kind sharing one PostgreSQL database,
schedulers and workers as real `python -m controller` processes, all killed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.store.filters import RunFilter
from controller.store.records import RunRecord
from controller.store.store import Store
from tests.helpers import dagu_home, group_alive
from tests.pg import PostgresServer, postgres_server


@dataclass
class Cluster:
    """The shared environment and every process started in it."""

    env: dict[str, str]
    url: str
    home: Path
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _seq: int = 0  # run ids made by `enqueue` so far

    def write_config(self, text: str) -> None:
        (self.home / "config.yaml").write_text(textwrap.dedent(text))

    def write_dag(self, name: str, text: str) -> Path:
        path = self.home / "dags" / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    def spawn(
        self, *args: str, name: str, wrapper: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """`python -m controller ARGS` (behind `wrapper`) in its own process group, stderr to
        `<tmp>/<name>.err`."""
        with open(self.tmp / f"{name}.err", "ab") as err:
            p = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "controller", *args],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def spawn_on_host(self, host: str, *args: str, name: str) -> subprocess.Popen[bytes]:
        """Like `spawn`, in a UTS namespace of its own named `host`: its runners record that
        host, so the leader treats them as another machine's (heartbeat, never a signal)."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("a separate host name needs root and unshare(1)")
        script = 'hostname "$0" && exec "$@"'
        return self.spawn(*args, name=name, wrapper=("unshare", "--uts", "sh", "-c", script, host))

    def store(self) -> Store:
        return Store(self.url)

    def runs(self, dag: str | None = None) -> list[RunRecord]:
        with self.store() as s:
            return s.list_runs(RunFilter(dag_name=dag), limit=100_000)

    def enqueue(
        self, dag: str, count: int, *, queue: str = "", params: list[str] | None = None
    ) -> None:
        """Queue `count` runs the way `dagloop enqueue` records them (without a process each);
        `queue` is the DAG's `queue:` (default: its name)."""
        path = self.home / "dags" / f"{dag}.yaml"
        text = path.read_text()
        from model.status import RunStatus

        with self.store() as s:
            for i in range(count):
                s.record_run(
                    dag_name=dag,
                    run_id=f"{dag}-{self._seq + i:04d}",
                    status=RunStatus.QUEUED,
                    file=str(path),
                    spec_yaml=text,
                    queue=queue or dag,
                    trigger="enqueue",
                    params=params or [],
                    now=time.time() + i * 1e-6,  # FIFO order = index order
                )
        self._seq += count


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    with _cluster(tmp_path, pg_url) as c:
        yield c


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, for tests that stop and restart it; with
    durable commits (`fsync`), since `-m immediate` drops commits not yet flushed."""
    with postgres_server(fsync=True) as server:
        if server is None:
            pytest.skip("PostgreSQL is not installed (Debian package `postgresql`)")
        yield server


@pytest.fixture
def outage(tmp_path: Path, own_pg: PostgresServer) -> Iterator[tuple[Cluster, PostgresServer]]:
    """A cluster on `own_pg`, and the server, which the test may stop; it is listening again
    at the end whatever the test did."""
    from controller.store.migrate import upgrade
    from model.config import load_settings

    url = own_pg.create_database()
    upgrade(load_settings(env={"DAGU_DATABASE_URL": url, "DAGU_HOME": "/nonexistent"}))
    try:
        with _cluster(tmp_path, url) as c:
            yield c, own_pg
    finally:
        own_pg.resume_if_stopped()


@contextmanager
def _cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    env = dagu_home(tmp_path)
    env["DAGU_DATABASE_URL"] = pg_url
    # Fast failure detection for the tests (defaults: 2 s beats, 10 s timeout).
    env["DAGU_CONTROLLER_HEARTBEAT_INTERVAL_SECONDS"] = "0.5"
    env["DAGU_CONTROLLER_HEARTBEAT_TIMEOUT_SECONDS"] = "3"
    env["DAGU_CONTROLLER_RESYNC_INTERVAL_SECONDS"] = "0.5"
    c = Cluster(env, pg_url, Path(env["DAGU_HOME"]), tmp_path)
    try:
        yield c
    finally:
        for p in c.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in c.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in c.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        # Runners are in sessions of their own: none of this test may outlive it.
        for run in c.runs():
            if run.pid is not None and group_alive(run.pid):
                os.killpg(run.pid, signal.SIGKILL)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best
