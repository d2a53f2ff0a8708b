"""Last known good through the real loop and runner processes: a DAG whose file becomes
invalid keeps its schedule with the last valid version and says so (plan, log, API metric);
`controller.onInvalidDag: stop` stops it; a file never valid is not scheduled; a deleted file
is removed."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import falcon.testing
import pytest

from api.app import create_app
from controller.catalog import catalog_for
from controller.loop.controller import Controller
from controller.store.filters import RunFilter
from controller.store.records import RunRecord
from controller.store.store import Store
from model.config import load_settings
from tests.gitops.gitrepo import dag
from tests.helpers import dagu_home, run_cli, wait_until

T0 = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC).timestamp()
BROKEN = "steps: [\n"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    e = dagu_home(tmp_path)
    for k in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DAGU_HOME", e["DAGU_HOME"])
    monkeypatch.setenv("PYTHONPATH", e["PYTHONPATH"])
    return e


@pytest.fixture
def make(env: dict[str, str]) -> Iterator[Callable[[], tuple[Controller, Clock]]]:
    made: list[Controller] = []

    def factory() -> tuple[Controller, Clock]:
        clock = Clock()
        c = Controller(load_settings(), clock=clock)
        made.append(c)
        return c, clock

    yield factory
    for c in made:
        for p in c.applier.running_children():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        c.store.close()


def write(env: dict[str, str], name: str, text: str) -> Path:
    path = Path(env["DAGU_HOME"]) / "dags" / f"{name}.yaml"
    path.write_text(text)
    return path


def tick(c: Controller, clock: Clock, minute: int, dag_name: str, count: int) -> list[RunRecord]:
    """Move the clock to T0 + `minute` minutes and pass until `count` runs are final."""
    clock.t = T0 + 60 * minute
    c.refresh_catalog(force=True)

    def done() -> list[RunRecord] | None:
        c.pass_once()
        runs = c.store.list_runs(RunFilter(dag_name=dag_name))
        return runs if len(runs) >= count and all(r.status.is_final() for r in runs) else None

    return wait_until(done, 20.0, interval=0.05)  # type: ignore[return-value]


def test_invalid_file_keeps_its_last_good_version_scheduled_and_says_so(
    make: Callable[[], tuple[Controller, Clock]],
    env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = dag("echo good", schedule="* * * * *")
    write(env, "a", good)
    c, clock = make()
    tick(c, clock, 0, "a", 1)
    write(env, "a", BROKEN)
    runs = tick(c, clock, 1, "a", 2)
    assert [r.spec_yaml for r in runs] == [good, good]  # the last good text ran again
    # the log line keeps a constant message; the reason (a field) names the last good version
    reasons = [getattr(r, "reason", "") for r in caplog.records]
    assert any(reason.startswith("using revision sha256:") for reason in reasons), reasons
    code, out, _ = run_cli("status", "a", env=env)
    assert code == 0 and "has changed since this run" in out
    code, out, err = run_cli("plan", env=env)
    assert code == 0, err
    assert "using revision sha256:" in out and "of DAG a: the current file is invalid:" in out
    code, out, _ = run_cli("plan", "--json", env=env)
    (invalid,) = json.loads(out)["invalid"]
    assert invalid["using"].startswith("sha256:") and invalid["errors"]
    s = c.settings
    app = create_app(
        settings=s,
        store_factory=lambda: Store(s.db_path, readonly=True),
        catalog=catalog_for(s),
        started_at=T0,
    )
    client = falcon.testing.TestClient(app)
    assert 'dagloop_dag_invalid{dag="a"} 1.0' in client.simulate_get("/api/v2/metrics").text
    assert client.simulate_get("/api/v2/dags/a").json["errors"]
    (planned,) = client.simulate_get("/api/v2/plan").json["invalid"]
    assert planned["using"] == invalid["using"]  # a fresh server knows the last good version


def test_on_invalid_dag_stop_stops_the_schedule(
    make: Callable[[], tuple[Controller, Clock]],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGU_CONTROLLER_ON_INVALID_DAG", "stop")
    write(env, "a", dag("echo good", schedule="* * * * *"))
    c, clock = make()
    tick(c, clock, 0, "a", 1)
    write(env, "a", BROKEN)
    tick(c, clock, 1, "a", 1)
    assert len(c.store.list_runs(RunFilter(dag_name="a"))) == 1


def test_never_valid_file_is_not_scheduled_and_deleted_file_is_removed(
    make: Callable[[], tuple[Controller, Clock]], env: dict[str, str]
) -> None:
    write(env, "never", BROKEN)
    gone = write(env, "gone", dag("echo x", schedule="* * * * *"))
    c, clock = make()
    tick(c, clock, 0, "gone", 1)
    assert c.store.list_runs(RunFilter(dag_name="never")) == []
    gone.unlink()
    clock.t = T0 + 60
    c.refresh_catalog(force=True)
    c.pass_once()
    assert len(c.store.list_runs(RunFilter(dag_name="gone"))) == 1
    assert c.catalog.get("gone") is None
