"""Every `Store` verb on both databases (the `store_location` fixture runs each test twice)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controller.store.filters import RunFilter
from controller.store.records import Conflict, LimitReached, NewRun, NotFound
from controller.store.store import Store
from model.status import RunStatus, StepStatus


@pytest.fixture
def store(store_location: str | Path) -> Store:
    return Store(store_location)


def test_record_and_get_runs(store: Store) -> None:
    run = store.record_run(
        dag_name="etl", run_id="r1", status=RunStatus.QUEUED, params=["A=1"], now=100.0
    )
    assert run.queue == "etl" and run.queued_at == 100.0 and run.params == ["A=1"]
    assert store.get_run("etl", "r1") == run
    assert store.get_run_by_id(run.id) == run
    later = store.record_run(dag_name="etl", run_id="r2", status=RunStatus.RUNNING, now=101.0)
    assert store.get_run("etl", "latest").id == later.id
    with pytest.raises(NotFound):
        store.get_run("etl", "nope")
    with pytest.raises(NotFound):
        store.get_run_by_id(999_999)


def test_a_repeated_create_conflicts_instead_of_duplicating(store: Store) -> None:
    store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED, scheduled_at=60.0)
    with pytest.raises(Conflict):
        store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED)
    with pytest.raises(Conflict):  # the same tick under another id: launched at most once
        store.record_run(dag_name="d", run_id="b", status=RunStatus.QUEUED, scheduled_at=60.0)
    assert [r.run_id for r in store.list_runs(RunFilter(dag_name="d"))] == ["a"]
    assert store.list_scheduled_runs(since=0.0) == [("d", 60.0)]


def test_record_runs_inserts_a_batch_and_skips_only_the_taken_ones(store: Store) -> None:
    store.record_run(dag_name="d", run_id="old", status=RunStatus.QUEUED, scheduled_at=60.0)
    batch = [
        NewRun(dag_name="d", run_id="x", status=RunStatus.QUEUED, scheduled_at=120.0),
        NewRun(dag_name="d", run_id="y", status=RunStatus.QUEUED, scheduled_at=60.0),  # tick
        NewRun(dag_name="e", run_id="old", status=RunStatus.QUEUED, params=("A=1",)),
        NewRun(dag_name="d", run_id="old", status=RunStatus.QUEUED),  # run id
    ]
    got = store.record_runs(batch, now=200.0)
    assert [None if r is None else r.run_id for r in got] == ["x", None, "old", None]
    x, e = got[0], got[2]
    assert x is not None and e is not None
    assert store.get_run_by_id(x.id) == x and store.get_run("e", "old") == e
    assert e.params == ["A=1"] and e.queue == "e" and e.queued_at == 200.0
    assert sorted(r.run_id for r in store.list_runs(RunFilter(dag_name="d"))) == ["old", "x"]


def test_max_active_is_checked_with_the_insert(store: Store) -> None:
    store.record_run(dag_name="d", run_id="a", status=RunStatus.RUNNING, max_active=1)
    with pytest.raises(LimitReached):
        store.record_run(dag_name="d", run_id="b", status=RunStatus.RUNNING, max_active=1)
    store.record_run(dag_name="d", run_id="c", status=RunStatus.RUNNING, max_active=-1)


def test_concurrent_starts_never_exceed_max_active(store_location: str | Path) -> None:
    """Eight connections race to start a run of one DAG with maxActiveRuns 2."""
    Store(store_location).close()
    won: list[str] = []
    barrier = threading.Barrier(8)

    def start(i: int) -> None:
        with Store(store_location) as s:
            barrier.wait()
            try:
                s.record_run(dag_name="d", run_id=f"r{i}", status=RunStatus.RUNNING, max_active=2)
                won.append(f"r{i}")
            except LimitReached:
                pass

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 2
    with Store(store_location) as s:
        assert len(s.list_runs(RunFilter(dag_name="d"))) == 2


def test_claim_only_a_queued_run(store: Store) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED)
    steps = [{"position": 0, "name": "a"}, {"position": 1, "kind": "onExit", "name": "onExit"}]
    got = store.claim_queued_run(run.id, steps=steps, pid=42, started_at=5.0)
    assert got is not None
    claimed, ids = got
    assert claimed == store.get_run_by_id(run.id)
    assert claimed.status == RunStatus.RUNNING and claimed.pid == 42
    assert [(s.id, s.kind, s.name) for s in store.list_steps(run.id)] == [
        (ids[0], "step", "a"),
        (ids[1], "onExit", "onExit"),
    ]
    assert store.claim_queued_run(run.id, steps=steps, pid=43) is None
    assert len(store.list_steps(run.id)) == 2  # a failed claim writes no step
    other = store.record_run(dag_name="d", run_id="b", status=RunStatus.QUEUED)
    assert store.finish_queued_run(other.id, status=RunStatus.ABORTED, error="dequeued", now=9.0)
    assert store.claim_queued_run(other.id) is None
    assert not store.finish_queued_run(run.id, status=RunStatus.ABORTED, error="x", now=9.0)


def test_update_run_rejects_unknown_columns(store: Store) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED)
    store.update_run(run.id, params=["X=2"], worker_selector={"gpu": "true"}, notes="n")
    again = store.get_run_by_id(run.id)
    assert again.params == ["X=2"] and again.worker_selector == {"gpu": "true"}
    with pytest.raises(ValueError, match="unknown run column"):
        store.update_run(run.id, nope=1)


def test_list_runs_filters(store: Store) -> None:
    for i, (dag, status) in enumerate(
        [("alpha", RunStatus.SUCCEEDED), ("beta", RunStatus.FAILED), ("alphabet", RunStatus.QUEUED)]
    ):
        store.record_run(dag_name=dag, run_id=f"r{i}", status=status, now=float(i))
    found = {
        RunFilter(): ["alphabet", "beta", "alpha"],
        RunFilter(name_contains="alpha"): ["alphabet", "alpha"],
        RunFilter(statuses=(RunStatus.FAILED,)): ["beta"],
        RunFilter(since=1.0, until=1.5): ["beta"],
        RunFilter(run_id="r2"): ["alphabet"],
        RunFilter(dag_name="alpha", statuses=(RunStatus.SUCCEEDED, RunStatus.FAILED)): ["alpha"],
        RunFilter(dag_name="gamma"): [],
    }
    for where, dag_names in found.items():
        assert [r.dag_name for r in store.list_runs(where)] == dag_names, where
        assert store.count_runs(where) == len(dag_names), where
    assert [r.run_id for r in store.list_runs(limit=1)] == ["r2"]
    assert [r.run_id for r in store.list_active_runs()] == ["r2"]
    assert store.count_runs_by_status([RunStatus.FAILED, RunStatus.RUNNING]) == {
        RunStatus.FAILED: 1,
        RunStatus.RUNNING: 0,
    }
    assert set(store.latest_runs(["alpha", "beta", "gamma"])) == {"alpha", "beta"}


def test_steps_are_replaced_and_updated(store: Store) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.RUNNING)
    first = store.record_steps(
        run.id,
        [
            {"position": 0, "name": "one", "spec": {"command": "true"}, "stdout": "/x"},
            {"position": 1, "name": "two"},
            {"position": 2, "kind": "onExit", "name": "onExit"},
        ],
    )
    (again,) = store.record_steps(
        run.id, [{"position": 0, "name": "one", "spec": {"command": "false"}}]
    )
    steps = store.list_steps(run.id)
    assert [s.id for s in steps] == [again, *first[1:]]
    assert [(s.kind, s.name) for s in steps] == [
        ("step", "one"),
        ("step", "two"),
        ("onExit", "onExit"),
    ]
    assert steps[0].spec == {"command": "false"} and steps[0].stdout == ""  # replaced whole
    store.update_step(
        steps[1].id, status=StepStatus.SUCCEEDED, exit_code=0, outputs={"OUT": "v"}, pgid=7
    )
    two = store.list_steps(run.id)[1]
    assert (two.status, two.exit_code, two.outputs, two.pgid) == (
        StepStatus.SUCCEEDED,
        0,
        {"OUT": "v"},
        7,
    )


def test_requests(store: Store) -> None:
    first = store.record_request(kind="stop", dag_name="d", run_id="a")
    second = store.record_request(kind="retry", dag_name="d", args={"step": "x"})
    assert [r.id for r in store.list_open_requests()] == [first, second]
    store.record_request_done(first, "stopped")
    (left,) = store.list_open_requests()
    assert left.id == second and left.args == {"step": "x"}


def test_run_totals_survive_pruning(store: Store) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED)
    store.update_run(run.id, status=RunStatus.RUNNING, started_at=10.0)
    store.update_run(run.id, status=RunStatus.SUCCEEDED, finished_at=13.0)
    store.update_run(run.id, status=RunStatus.SUCCEEDED, notes="again")  # not counted twice
    store.record_run(dag_name="d", run_id="b", status=RunStatus.FAILED, now=1.0)
    totals = {t["status"]: t for t in store.list_run_totals()}
    assert totals[RunStatus.SUCCEEDED]["count"] == 1
    assert totals[RunStatus.SUCCEEDED]["duration_sum"] == pytest.approx(3.0)
    assert totals[RunStatus.SUCCEEDED]["buckets"] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert totals[RunStatus.FAILED]["count"] == 1
    assert store.run_totals_signature() == (2, 2, pytest.approx(3.0))
    assert store.prune_run_tree(run.id)[0].run_id == "a"
    assert {t["status"]: t["count"] for t in store.list_run_totals()}[RunStatus.SUCCEEDED] == 1


def test_prune_keeps_active_sub_runs_and_lists_finished(store: Store) -> None:
    top = store.record_run(dag_name="p", run_id="t", status=RunStatus.SUCCEEDED)
    store.update_run(top.id, finished_at=50.0)
    sub = store.record_run(
        dag_name="c",
        run_id="s",
        status=RunStatus.SUCCEEDED,
        parent_dag="p",
        parent_run_id="t",
        root_dag="p",
        root_run_id="t",
    )
    assert [r.id for r in store.list_sub_runs("p", "t")] == [sub.id]
    assert [r.id for r in store.list_finished_runs(before=60.0)] == [top.id]
    assert store.list_finished_runs(before=40.0) == []
    assert [r.id for r in store.list_finished_runs(before=60.0, exclude_dag_names=["p"])] == []
    assert store.max_finished_at() == 50.0
    assert {r.id for r in store.prune_run_tree(top.id)} == {top.id, sub.id}
    with pytest.raises(NotFound):
        store.get_run_by_id(sub.id)


def test_skipped_ticks_count_once(store: Store) -> None:
    assert store.record_skipped_ticks("d", [60.0, 120.0], reason="down", now=130.0) == 2
    assert store.record_skipped_ticks("d", [120.0, 180.0], reason="down", now=190.0) == 1
    assert store.list_skipped_ticks(since=100.0) == [("d", 120.0, "down"), ("d", 180.0, "down")]
    assert store.prune_skipped_ticks(before=150.0) == 2
    assert store.skipped_totals() == {"d": 3}


def test_meta_instances_and_error_totals(store: Store) -> None:
    assert store.get_meta("k") is None
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    assert store.get_meta("k") == "v2"
    store.record_instance(id="i1", host="h", pid=1, status="standby", started_at=1.0, now=1.0)
    store.record_instance(id="i1", host="h", pid=1, status="active", started_at=1.0, now=2.0)
    (inst,) = store.list_instances()
    assert (inst.status, inst.heartbeat_at) == ("active", 2.0)
    store.record_error("disk_full")
    store.record_error("disk_full")
    assert store.list_error_totals() == {"disk_full": 2}
    assert store.check_integrity() == []


def test_delete_run(store: Store) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.FAILED)
    store.record_steps(run.id, [{"position": 0, "name": "s"}])
    store.delete_run(run.id)
    assert store.list_runs() == [] and store.list_steps(run.id) == []


def test_readonly_store_reads_but_never_writes(store_location: str | Path) -> None:
    with Store(store_location) as s:
        s.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED, now=time.time())
    with Store(store_location, readonly=True) as ro:
        assert ro.get_run("d", "a").status == RunStatus.QUEUED
        with pytest.raises(Exception, match=r"(?i)read.?only"):
            ro.set_meta("k", "v")


def test_a_late_end_of_a_lost_run_is_recorded_and_the_lost_mark_kept_as_a_note(
    store: Store,
) -> None:
    run = store.record_run(dag_name="d", run_id="a", status=RunStatus.RUNNING)
    (step,) = store.record_steps(run.id, [{"position": 0, "kind": "step", "name": "s"}])
    store.update_run(run.id, status=RunStatus.FAILED, error="lost: runner process is gone")
    # the runner's buffered writes, sent once the database is back; sent twice (a commit
    # whose answer was lost), they change nothing more
    writes = [
        ({step: {"status": StepStatus.RUNNING}}, {}),
        ({step: {"status": StepStatus.SUCCEEDED, "exit_code": 0}}, {}),
        ({}, {"status": RunStatus.SUCCEEDED, "finished_at": 20.0, "error": ""}),
    ]
    store.record_run_writes(run.id, writes)
    store.record_run_writes(run.id, writes)
    got = store.get_run_by_id(run.id)
    assert (got.status, got.error, got.finished_at) == (RunStatus.SUCCEEDED, "", 20.0)
    assert got.notes == (
        "marked lost: runner process is gone while its runner could not reach the database; "
        "the runner reported in later"
    )
    assert [s.status for s in store.list_steps(run.id)] == [StepStatus.SUCCEEDED]
