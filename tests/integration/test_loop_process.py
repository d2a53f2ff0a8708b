"""`dagloop scheduler` as real processes: kill -9 of the controller mid-run, standby takeover,
SIGTERM graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.store.filters import RunFilter
from controller.store.store import Store
from model.status import RunStatus
from tests.helpers import run_cli, wait_until


def scheduler(env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, "-m", "controller", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(p)
    return p


def store_of(env: dict[str, str]) -> Store:
    return Store(Path(env["DAGU_HOME"]) / "data" / "dagloop.db")


def active_instance(env: dict[str, str], pid: int) -> bool:
    with store_of(env) as s:
        return any(i.pid == pid and i.status == "active" for i in s.list_instances())


def test_kill9_controller_run_finishes_and_standby_takes_over(
    dagu_env: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    dags = Path(dagu_env["DAGU_HOME"]) / "dags"
    (dags / "slow.yaml").write_text("steps:\n  - command: sleep 1.5\n")
    first = scheduler(dagu_env, procs)
    wait_until(lambda: active_instance(dagu_env, first.pid), 10)
    second = scheduler(dagu_env, procs)
    code, out, err = run_cli("enqueue", "slow", env=dagu_env)
    assert code == 0, err
    run_id = out.strip()

    def status() -> RunStatus:
        with store_of(dagu_env) as s:
            return s.get_run("slow", run_id).status

    wait_until(lambda: status() == RunStatus.RUNNING, 10)
    first.kill()
    first.wait()
    killed_at = time.monotonic()
    wait_until(lambda: active_instance(dagu_env, second.pid), 5)
    assert time.monotonic() - killed_at < 2.5
    wait_until(lambda: status() == RunStatus.SUCCEEDED, 15)
    with store_of(dagu_env) as s:
        assert len(s.list_runs(RunFilter(dag_name="slow"))) == 1
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=10) == 0


def test_sigterm_stops_runs_after_grace_and_records_them(
    dagu_env: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    env = dict(dagu_env, DAGU_CONTROLLER_SHUTDOWN_GRACE_SECONDS="1")
    (Path(env["DAGU_HOME"]) / "dags" / "forever.yaml").write_text("steps:\n  - command: sleep 60\n")
    ctl = scheduler(env, procs)
    code, out, _ = run_cli("enqueue", "forever", env=env)
    assert code == 0
    run_id = out.strip()

    def row() -> RunStatus:
        with store_of(env) as s:
            return s.get_run("forever", run_id).status

    wait_until(lambda: row() == RunStatus.RUNNING, 10)
    t0 = time.monotonic()
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=15) == 0
    assert time.monotonic() - t0 < 12
    with store_of(env) as s:
        r = s.get_run("forever", run_id)
    assert r.status == RunStatus.ABORTED and r.error == "controller shutdown"
    # no process of the run is left
    want = f"DAG_RUN_ID={run_id}".encode()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                assert want not in Path(f"/proc/{d}/environ").read_bytes().split(b"\0")
            except OSError:
                pass


def test_plan_command_reports_without_a_controller(dagu_env: dict[str, str]) -> None:
    dags = Path(dagu_env["DAGU_HOME"]) / "dags"
    (dags / "ok.yaml").write_text('schedule: "0 3 * * *"\nsteps:\n  - command: "true"\n')
    (dags / "bad.yaml").write_text("steps: [")
    code, out, err = run_cli("plan", "--json", env=dagu_env)
    assert code == 0, err
    import json

    doc = json.loads(out)
    assert [s["dag"] for s in doc["schedules"]] == ["ok"]
    assert doc["invalid"][0]["fileName"] == "bad"
    assert any(a["action"] == "RecordInvalid" for a in doc["actions"])
