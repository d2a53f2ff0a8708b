"""Workers on a shared PostgreSQL database: queued runs drained once each, queue limits held
across workers, worker labels honoured, stops forwarded, logs readable from any host."""

from __future__ import annotations

from model.status import RunStatus
from tests.distributed.conftest import Cluster, max_overlap
from tests.helpers import wait_until

RUNS = 500
QUEUE_LIMIT = 4


def test_three_workers_drain_500_runs_once_each_within_the_queue_limit(cluster: Cluster) -> None:
    marks = cluster.tmp / "marks"
    cluster.write_config(
        f"""
        scheduler:
          dispatch: workers
        queues:
          config:
            - name: shared
              maxActiveRuns: {QUEUE_LIMIT}
        """
    )
    cluster.write_dag(
        "job",
        f"""
        queue: shared
        maxActiveRuns: -1
        steps:
          - echo "$DAG_RUN_ID" >> {marks}
        """,
    )
    cluster.enqueue("job", RUNS, queue="shared")
    cluster.spawn("scheduler", name="scheduler")
    for i in range(3):
        cluster.spawn("worker", "-w", f"w{i}", "-m", "4", name=f"worker{i}")

    def drained() -> bool:
        with cluster.store() as s:
            return s.count_runs_by_status([RunStatus.SUCCEEDED])[RunStatus.SUCCEEDED] == RUNS

    wait_until(drained, timeout=240, interval=0.5)
    runs = cluster.runs("job")
    assert len(runs) == RUNS and {r.status for r in runs} == {RunStatus.SUCCEEDED}
    assert {r.attempt for r in runs} == {1}
    # Each run's step ran exactly once, on one of the three workers.
    lines = marks.read_text().split()
    assert sorted(lines) == sorted(r.run_id for r in runs)
    assert {r.worker_id for r in runs} <= {"w0", "w1", "w2"}
    assert len({r.worker_id for r in runs}) >= 2
    # The global queue's limit held at every instant, from the store's own records.
    intervals = [(r.started_at, r.finished_at) for r in runs]
    assert all(a is not None and b is not None for a, b in intervals)
    assert max_overlap(intervals) <= QUEUE_LIMIT  # type: ignore[arg-type]
