"""Kill the leader, kill a worker, cut a worker's connection: no run lost, none run twice."""

from __future__ import annotations

import os
import signal
import time

import falcon.testing
import psycopg

from controller.commands.server import build_app
from controller.store.pg import libpq_url
from controller.store.records import RunRecord
from model.config import load_settings
from model.status import RunStatus
from tests.distributed.conftest import Cluster
from tests.helpers import group_alive, run_cli, wait_until


def _instances(cluster: Cluster) -> dict[int, str]:
    with cluster.store() as s:
        return {i.pid: i.status for i in s.list_instances()}


def _started(run: RunRecord) -> bool:
    """Running, with its runner's pid and host recorded (they may follow the claim)."""
    return run.status == RunStatus.RUNNING and run.pid is not None and bool(run.host)


def _api(cluster: Cluster) -> falcon.testing.TestClient:
    settings = load_settings(env=cluster.env)
    return falcon.testing.TestClient(build_app(settings, started_at=time.time()))


def test_standby_takes_over_within_5_s_and_the_run_in_flight_finishes_once(
    cluster: Cluster,
) -> None:
    marks = cluster.tmp / "marks"
    cluster.write_dag(
        "long",
        f"""
        steps:
          - echo "start $DAG_RUN_ID" >> {marks}; sleep 3; echo "end $DAG_RUN_ID" >> {marks}
        """,
    )
    first = cluster.spawn("scheduler", name="first")
    wait_until(lambda: _instances(cluster).get(first.pid) == "active", timeout=20)
    second = cluster.spawn("scheduler", name="second")
    wait_until(lambda: _instances(cluster).get(second.pid) == "standby", timeout=20)
    cluster.enqueue("long", 1)
    wait_until(lambda: cluster.runs("long")[0].status == RunStatus.RUNNING, timeout=20)

    os.killpg(first.pid, signal.SIGKILL)  # the leader's host dies; its runner lives on
    killed = time.monotonic()
    first.wait()
    wait_until(lambda: _instances(cluster).get(second.pid) == "active", timeout=10)
    assert time.monotonic() - killed < 5.0

    api = _api(cluster)
    schedulers = api.simulate_get("/api/v2/services/scheduler").json["schedulers"]
    active = [s for s in schedulers if s["status"] == "active"]
    assert len(active) == 1 and f"-{second.pid}-" in active[0]["instanceId"]
    metrics = api.simulate_get("/api/v2/metrics").text
    leader_lines = [ln for ln in metrics.splitlines() if ln.startswith("dagloop_scheduler_leader{")]
    assert len(leader_lines) == 1 and active[0]["instanceId"] in leader_lines[0]

    wait_until(lambda: cluster.runs("long")[0].status == RunStatus.SUCCEEDED, timeout=30)
    cluster.enqueue("long", 1)  # the new leader starts new work
    wait_until(
        lambda: [r.status for r in cluster.runs("long")] == [RunStatus.SUCCEEDED] * 2, timeout=30
    )
    ids = [r.run_id for r in cluster.runs("long")]
    assert sorted(marks.read_text().splitlines()) == sorted(
        f"{what} {run_id}" for run_id in ids for what in ("start", "end")
    )


def test_a_killed_worker_host_loses_its_run_and_a_killed_worker_process_does_not(
    cluster: Cluster,
) -> None:
    cluster.write_config("scheduler:\n  dispatch: workers\n")
    cluster.write_dag("nap", "steps:\n  - sleep 60\n")
    cluster.spawn("scheduler", name="scheduler")
    host_a = cluster.spawn_on_host("host-a", "worker", "-w", "a", name="worker-a")
    cluster.enqueue("nap", 1)
    run = wait_until(
        lambda: next((r for r in cluster.runs("nap") if _started(r)), None),
        timeout=30,
    )
    assert run.host == "host-a" and run.worker_id == "a"  # type: ignore[union-attr]
    # The whole host dies: the worker, its runner and the step.
    os.killpg(host_a.pid, signal.SIGKILL)
    os.killpg(run.pid, signal.SIGKILL)  # type: ignore[union-attr]
    lost = wait_until(
        lambda: next((r for r in cluster.runs("nap") if r.status == RunStatus.FAILED), None),
        timeout=15,
    )
    assert lost.error.startswith("lost")  # type: ignore[union-attr]

    # Only the worker process dies: its runner goes on and records the run.
    cluster.write_dag("nap", "steps:\n  - sleep 2\n")
    host_b = cluster.spawn_on_host("host-b", "worker", "-w", "b", name="worker-b")
    with cluster.store() as s:
        s.record_run(
            dag_name="nap",
            run_id="second",
            status=RunStatus.QUEUED,
            file=str(cluster.home / "dags" / "nap.yaml"),
            spec_yaml="steps:\n  - sleep 2\n",
        )
    wait_until(lambda: cluster.runs("nap")[0].status == RunStatus.RUNNING, timeout=30)
    os.kill(host_b.pid, signal.SIGKILL)
    wait_until(lambda: cluster.runs("nap")[0].status == RunStatus.SUCCEEDED, timeout=30)
    assert cluster.runs("nap")[0].worker_id == "b"


def test_workers_survive_their_connections_being_cut(cluster: Cluster) -> None:
    marks = cluster.tmp / "marks"
    cluster.write_config("scheduler:\n  dispatch: workers\n")
    cluster.write_dag("job", f'maxActiveRuns: 3\nsteps:\n  - echo "$DAG_RUN_ID" >> {marks}\n')
    cluster.spawn("scheduler", name="scheduler")
    for i in range(2):
        cluster.spawn("worker", "-w", f"w{i}", "-m", "2", name=f"worker{i}")
    cluster.enqueue("job", 40)
    cut = 0
    deadline = time.monotonic() + 60
    with psycopg.connect(libpq_url(cluster.url), autocommit=True) as admin:
        while cut < 4 and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'dagloop-worker%' OR application_name LIKE "
                "'dagloop-listen%'"
            ).fetchone()
            cut += 1 if row and row[0] else 0
            time.sleep(0.3)  # spread the cuts over the drain; not a synchronisation
    assert cut == 4  # the workers' sessions were cut four times while they drained
    wait_until(
        lambda: [r.status for r in cluster.runs("job")].count(RunStatus.SUCCEEDED) == 40,
        timeout=120,
        interval=0.5,
    )
    assert sorted(marks.read_text().split()) == sorted(r.run_id for r in cluster.runs("job"))


def test_worker_labels_stops_and_logs_from_another_host(cluster: Cluster) -> None:
    cluster.write_dag(
        "gpu",
        """
        workerSelector:
          gpu: "true"
        steps:
          - name: hello
            command: echo "hello from $(hostname)"
        """,
    )
    cluster.write_dag("local", "steps:\n  - echo local\n")
    cluster.write_dag("nap", 'workerSelector:\n  gpu: "true"\nsteps:\n  - sleep 60\n')
    cluster.spawn("scheduler", name="scheduler")
    cluster.spawn_on_host("cpu-host", "worker", "-w", "cpu", name="worker-cpu")
    cluster.spawn_on_host("gpu-host", "worker", "-w", "gpu", "-l", "gpu=true", name="worker-gpu")
    cluster.enqueue("gpu", 3)
    cluster.enqueue("local", 1)
    wait_until(
        lambda: (
            all(r.status == RunStatus.SUCCEEDED for r in cluster.runs("gpu"))
            and len(cluster.runs("gpu")) == 3
        ),
        timeout=60,
    )
    assert {(r.worker_id, r.host) for r in cluster.runs("gpu")} == {("gpu", "gpu-host")}
    wait_until(lambda: cluster.runs("local")[0].status == RunStatus.SUCCEEDED, timeout=30)
    assert cluster.runs("local")[0].worker_id == ""  # no selector: the controller ran it

    # The log files are on "gpu-host": remove them here; the API serves the shipped copies.
    run = cluster.runs("gpu")[0]
    with cluster.store() as store:
        (step,) = store.list_steps(run.id)
        wait_until(lambda: store.get_log_blob(step.stdout), timeout=10)  # shipped when reaped
    for path in (cluster.home / "logs").glob("gpu/*"):
        for f in sorted(path.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    api = _api(cluster)
    doc = api.simulate_get(f"/api/v2/dag-runs/gpu/{run.run_id}/steps/hello/log").json
    assert doc["content"] == "hello from gpu-host"
    assert api.simulate_get(f"/api/v2/dag-runs/gpu/{run.run_id}/log").status_code == 200

    # A stop of a run on another host is forwarded by its worker.
    cluster.enqueue("nap", 1)
    nap = wait_until(
        lambda: next((r for r in cluster.runs("nap") if _started(r)), None),
        timeout=30,
    )
    code, out, err = run_cli("stop", "nap", env=cluster.env)
    assert code == 0, err
    assert "(on gpu-host)" in out
    wait_until(lambda: cluster.runs("nap")[0].status == RunStatus.ABORTED, timeout=20)
    wait_until(lambda: not group_alive(nap.pid), timeout=10)  # type: ignore[union-attr]
