"""The plan view (`controller.views.plan`) computes, without the loop, exactly what the loop's
own snapshot plans: same actions, queue positions, running runs, invalid files and schedules,
byte for byte, on a home that exercises every rule. Real DAG files, real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.loop.controller import Controller
from controller.reconcile.snapshot import Snapshot
from controller.store.retry import open_store
from controller.store.store import Store
from controller.views.plan import plan_document, render_plan
from model.config import Settings, load_settings
from model.status import RunStatus
from tests.helpers import REPO_ROOT, dagu_home

NOW = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
T = NOW.timestamp()

DAGS = {
    "every": 'schedule: "* * * * *"\nsteps:\n  - command: "true"\n',
    "done-today": ('schedule: "0 12 * * *"\nskipIfSuccessful: true\nsteps:\n  - command: "true"\n'),
    "serial": "maxActiveRuns: 1\nsteps:\n  - command: sleep 1\n",
    "stopper": 'schedule:\n  stop: "0 12 * * *"\nsteps:\n  - command: sleep 60\n',
    "later": 'schedule: "30 18 * * *"\nhistRetentionDays: 0\nsteps:\n  - command: "true"\n',
    "broken": "steps: [\n",
}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Store]]:
    env = dagu_home(tmp_path)
    for k in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DAGU_HOME", env["DAGU_HOME"])
    home = Path(env["DAGU_HOME"])
    for name, text in DAGS.items():
        (home / "dags" / f"{name}.yaml").write_text(text)
    settings = load_settings()
    store = open_store(settings)
    # done-today: succeeded since the previous tick (skipIfSuccessful skips today's)
    ok = store.record_run(
        dag_name="done-today", run_id="ok-1", status=RunStatus.SUCCEEDED, now=T - 3600
    )
    store.update_run(ok.id, started_at=T - 3600, finished_at=T - 3590)
    # serial: a running run whose runner is gone (lost), and two queued behind it
    lost = store.record_run(dag_name="serial", run_id="r-lost", status=RunStatus.RUNNING, now=T)
    store.update_run(lost.id, pid=2**22 + 12345, started_at=T - 10, heartbeat_at=T - 600)
    for i in (1, 2):
        store.record_run(dag_name="serial", run_id=f"q-{i}", status=RunStatus.QUEUED, now=T - 5 + i)
    # stopper: a queued run and a stop request for the DAG
    store.record_run(dag_name="stopper", run_id="s-1", status=RunStatus.QUEUED, now=T - 1)
    store.record_request(kind="stop", dag_name="stopper")
    # later: a finished run past its retention (histRetentionDays 0)
    old = store.record_run(dag_name="later", run_id="old-1", status=RunStatus.FAILED, now=T - 99)
    store.update_run(old.id, started_at=T - 99, finished_at=T - 90)
    yield settings, store
    store.close()


def _loop_document(settings: Settings, store: Store, name: str | None = None) -> str:
    """The document as it was built before the view left the loop: from `Controller.snapshot`."""
    ctl = Controller(settings, store=store, spawn_runners=False, clock=lambda: T)
    ctl.refresh_catalog(force=True)
    s = ctl.snapshot()
    return json.dumps(render_plan(Snapshot(s.now, s.desired, s.observed, s.actions), name=name))


def test_plan_view_equals_the_loops_plan_on_every_rule(world: tuple[Settings, Store]) -> None:
    settings, store = world
    doc = plan_document(settings=settings, store=store, now=NOW)
    assert json.dumps(doc) == _loop_document(settings, store)
    kinds = {a["action"] for a in doc["actions"]}
    assert {"RecordInvalid", "MarkLost", "Launch", "Prune", "CompleteRequest"} <= kinds, kinds
    assert doc["now"] == "2026-01-01T12:00:00.500000Z"
    assert [(q["dag"], q["runId"], q["position"]) for q in doc["queued"]][:2] == [
        ("serial", "q-1", 1),
        ("serial", "q-2", 2),
    ]
    assert [s["dag"] for s in doc["schedules"]] == ["done-today", "every", "later", "stopper"]


def test_plan_view_for_one_dag_keeps_only_that_dag(world: tuple[Settings, Store]) -> None:
    settings, store = world
    doc = plan_document(settings=settings, store=store, now=NOW, name="serial")
    assert json.dumps(doc) == _loop_document(settings, store, name="serial")
    assert {a.get("dag_name") for a in doc["actions"]} == {"serial"}
    assert doc["invalid"] == [] and [s["dag"] for s in doc["schedules"]] == []


def test_plan_view_changes_nothing(world: tuple[Settings, Store]) -> None:
    settings, store = world
    before = [(r.run_id, r.status) for r in store.list_runs()]
    requests = store.list_open_requests()
    plan_document(settings=settings, store=store, now=NOW)
    assert [(r.run_id, r.status) for r in store.list_runs()] == before
    assert store.list_open_requests() == requests


def test_the_api_server_never_loads_the_loop_the_engine_or_the_spawner(tmp_path: Path) -> None:
    """Serving /plan (and every other read) imports no code that runs the loop, applies
    actions, forks runners or runs a DAG — not even lazily."""
    env = dagu_home(tmp_path)
    home = Path(env["DAGU_HOME"])
    for name, text in DAGS.items():
        (home / "dags" / f"{name}.yaml").write_text(text)
    code = """
import sys, time
import falcon.testing
from api.app import create_app
from controller.catalog import Catalog
from controller.store.retry import open_store
from model.config import load_settings
s = load_settings()
open_store(s).close()
app = create_app(settings=s, store_factory=lambda: open_store(s, readonly=True),
                 catalog=Catalog(s.dags_dir, s.base_config), started_at=time.time())
client = falcon.testing.TestClient(app)
for path in ("/plan", "/dags", "/dag-runs", "/queues", "/metrics", "/health"):
    assert client.simulate_get("/api/v2" + path).status_code == 200, path
bad = ("controller.loop", "controller.spawn", "controller.engine", "controller.cluster",
       "controller.commands")
print(sorted(m for m in sys.modules if m.startswith(bad)))
"""
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
