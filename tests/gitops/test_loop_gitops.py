"""git_sync through the real control loop, runner processes, CLI and API: a synced DAG's runs
carry their commit (`status --json`, `start --json`, `GET /dag-runs/...`), and
`GET /api/v2/sync/status` reports the sync in Dagu's shape."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import falcon.testing
import pytest

from api.app import create_app
from controller.catalog import Catalog
from controller.gitsync.status import read_status
from controller.loop.controller import Controller
from controller.store.filters import RunFilter
from controller.store.store import Store
from model.config import load_settings
from tests.gitops.gitrepo import Remote, dag
from tests.helpers import dagu_home, run_cli, wait_until

T0 = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC).timestamp()


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: Remote) -> dict[str, str]:
    remote.commit({"dags/tick.yaml": dag("echo hi", schedule="* * * * *")})
    e = dagu_home(tmp_path)
    (Path(e["DAGU_HOME"]) / "dags").rmdir()  # a fresh home: git_sync makes the link
    e.update(
        DAGU_GITSYNC_ENABLED="true",
        DAGU_GITSYNC_REPOSITORY=remote.url,
        DAGU_GITSYNC_PATH="dags",
    )
    for k in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(k)
    for k, v in e.items():
        if k.startswith("DAGU_") or k == "PYTHONPATH":
            monkeypatch.setenv(k, v)
    e["COMMIT"] = remote.commit({"dags/tick.yaml": dag("echo synced", schedule="* * * * *")})
    return e


@pytest.fixture
def ctl(env: dict[str, str]) -> Iterator[Controller]:
    c = Controller(load_settings(), clock=lambda: T0)
    yield c
    for p in c.applier.running_children():
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    c.store.close()


def test_synced_dag_runs_carry_their_commit_in_status_start_and_api(
    ctl: Controller, env: dict[str, str]
) -> None:
    commit = env["COMMIT"]

    def finished() -> bool:
        ctl.pass_once()
        runs = ctl.store.list_runs(RunFilter(dag_name="tick"))
        return bool(runs) and all(r.status.is_final() for r in runs)

    wait_until(finished, 20.0, interval=0.05)
    (run,) = ctl.store.list_runs(RunFilter(dag_name="tick"))
    assert run.revision_commit == commit and not run.revision_dirty

    code, out, err = run_cli("status", "tick", "--json", env=env)
    assert code == 0, err
    status = json.loads(out)
    revision = status["revision"]
    assert revision["commit"] == commit and revision["digest"].startswith("sha256:")
    assert status["fileChangedSinceRun"] is False

    code, out, err = run_cli("start", "tick", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["revision"]["commit"] == commit
    code, out, err = run_cli("enqueue", "tick", "--run-id", "q1", env=env)
    assert code == 0, err
    assert ctl.store.get_run("tick", "q1").revision_commit == commit

    s = ctl.settings
    app = create_app(
        settings=s,
        store_factory=lambda: Store(s.db_path, readonly=True),
        catalog=Catalog(s.dags_dir, s.base_config),
        started_at=T0,
        clock=lambda: T0,
    )
    client = falcon.testing.TestClient(app)
    details = client.simulate_get(f"/api/v2/dag-runs/tick/{run.run_id}").json["dagRunDetails"]
    assert details["revision"] == {
        "commit": commit,
        "digest": revision["digest"],
        "dirty": False,
    }
    sync = client.simulate_get("/api/v2/sync/status").json
    assert sync["enabled"] is True and sync["lastSyncCommit"] == commit
    assert sync["lastSyncStatus"] == "synced" and sync["counts"] == {"synced": 1}
    assert sync["items"] == [{"dagId": "tick", "state": "synced", "errors": []}]
    metrics = client.simulate_get("/api/v2/metrics").text
    assert "dagloop_gitsync_failures_total 0.0" in metrics
    assert "dagloop_gitsync_last_success_timestamp_seconds " in metrics
    assert "dagloop_gitsync_last_success_timestamp_seconds 0.0" not in metrics


def test_sync_status_without_git_sync_says_disabled(tmp_path: Path) -> None:
    s = load_settings(env={"DAGU_HOME": str(tmp_path / "home")})
    app = create_app(
        settings=s,
        store_factory=lambda: Store(s.db_path),
        catalog=Catalog(s.dags_dir, s.base_config),
        started_at=T0,
    )
    body = falcon.testing.TestClient(app).simulate_get("/api/v2/sync/status").json
    assert body["enabled"] is False and body["lastSyncStatus"] == "never"
    assert body["summary"] == "git sync is disabled" and body["items"] == []


def test_the_loop_follows_new_commits_and_keeps_the_last_good_one(
    env: dict[str, str], remote: Remote
) -> None:
    now = [T0]
    c = Controller(load_settings(), clock=lambda: now[0], spawn_runners=False)
    try:

        def dags_are(names: list[str]) -> bool:
            c.pass_once()
            return [e.file_name for e in c.catalog.entries()] == names

        wait_until(lambda: dags_are(["tick"]), 20.0, interval=0.05)
        added = remote.commit({"dags/tick.yaml": None, "dags/b.yaml": dag(), "dags/c.yaml": dag()})
        now[0] += c.settings.gitsync_autosync_interval_seconds
        wait_until(lambda: dags_are(["b", "c"]), 20.0, interval=0.05)
        remote.commit({"dags/c.yaml": "steps: [\n"})  # a broken commit is not used
        now[0] += c.settings.gitsync_autosync_interval_seconds
        status_file = c.settings.home / "gitsync" / "status.json"
        wait_until(lambda: c.pass_once() is not None and '"error"' in status_file.read_text())
        assert dags_are(["b", "c"])
        assert Path(os.path.realpath(c.settings.dags_dir)).parent.name == added
    finally:
        c.store.close()


def test_the_loop_follows_a_force_push_and_rides_out_an_unreachable_remote(
    env: dict[str, str], remote: Remote
) -> None:
    now = [T0]
    c = Controller(load_settings(), clock=lambda: now[0], spawn_runners=False)
    status_file = c.settings.home / "gitsync" / "status.json"

    def dags_are(names: list[str]) -> bool:
        c.pass_once()
        return [e.file_name for e in c.catalog.entries()] == names

    def last_sync(status: str, commit: str) -> bool:
        c.pass_once()
        seen = read_status(status_file)
        return seen is not None and (seen.last_sync_status, seen.last_sync_commit) == (
            status,
            commit,
        )

    try:
        wait_until(lambda: dags_are(["tick"]), 20.0, interval=0.05)
        later = remote.commit({"dags/b.yaml": dag()})
        now[0] += c.settings.gitsync_autosync_interval_seconds
        wait_until(lambda: dags_are(["b", "tick"]), 20.0, interval=0.05)
        remote.rewind(env["COMMIT"])  # a force-push takes the branch back: b goes away
        now[0] += c.settings.gitsync_autosync_interval_seconds
        wait_until(lambda: dags_are(["tick"]), 20.0, interval=0.05)
        assert Path(os.path.realpath(c.settings.dags_dir)).parent.name == env["COMMIT"]
        assert later != env["COMMIT"]
        remote.bare.rename(remote.bare.with_name("gone.git"))  # the remote is unreachable
        now[0] += c.settings.gitsync_autosync_interval_seconds
        wait_until(lambda: last_sync("error", env["COMMIT"]), 20.0, interval=0.05)
        assert dags_are(["tick"])  # the current revision keeps running
        seen = read_status(status_file)
        assert seen is not None and seen.last_error
    finally:
        c.store.close()
