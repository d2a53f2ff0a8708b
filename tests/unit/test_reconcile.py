"""`reconcile.plan` as data in, actions out: one table row per rule, incl. "converged -> []"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.ids import scheduled_run_id
from controller.reconcile.rules import (
    Action,
    CompleteRequest,
    DagDesired,
    DesiredState,
    InvalidFile,
    Launch,
    MarkLost,
    ObservedState,
    Prune,
    RecordInvalid,
    RequestView,
    RunView,
    SkipTick,
    StartQueued,
    StartTick,
    Stop,
    plan,
    queue_positions,
)
from model.status import RunStatus

NOW = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
TICK = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def dag(name: str = "d", **kw: object) -> DagDesired:
    return DagDesired(name=name, file=f"/dags/{name}.yaml", **kw)  # type: ignore[arg-type]


_UNSET: object = object()


def run(
    id: int, status: RunStatus, dag_name: str = "d", alive: object = _UNSET, **kw: object
) -> RunView:
    """A run row; by default running runs are alive and queued ones not yet dispatched."""
    if alive is _UNSET:
        alive = None if status == RunStatus.QUEUED else True
    return RunView(id=id, dag_name=dag_name, run_id=f"r{id}", status=status, alive=alive, **kw)  # type: ignore[arg-type]


def D(*dags: DagDesired, **kw: object) -> DesiredState:
    return DesiredState(dags={d.name: d for d in dags}, **kw)  # type: ignore[arg-type]


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_converged_world_plans_nothing() -> None:
    desired = D(dag(), dag("e", next_start_at=TICK + timedelta(minutes=1)))
    observed = ObservedState(
        active=(run(1, RunStatus.RUNNING),),
        scheduled=frozenset({("e", TICK)}),
    )
    assert plan(desired, observed, NOW) == []
    assert plan(DesiredState(), ObservedState(), NOW) == []


def test_due_tick_launches_with_deterministic_id() -> None:
    actions = plan(D(dag(start_ticks=(StartTick(TICK),), params=("A=1",))), ObservedState(), NOW)
    assert actions == [
        Launch(
            "d",
            scheduled_run_id("d", TICK.timestamp()),
            "schedule",
            True,
            reason="scheduled at 2026-01-01T12:00:00Z",
            scheduled_at=TICK,
            params=("A=1",),
            tick=("d", "start", TICK),
        )
    ]
    # planning twice gives the same identity (the unique index refuses a second insert)
    assert (
        plan(D(dag(start_ticks=(StartTick(TICK),), params=("A=1",))), ObservedState(), NOW)
        == actions
    )


@pytest.mark.parametrize(
    "observed",
    [
        ObservedState(scheduled=frozenset({("d", TICK)})),
        ObservedState(decided=frozenset({("d", "start", TICK)})),
    ],
    ids=["already-launched", "already-decided"],
)
def test_tick_launched_or_decided_before_is_not_repeated(observed: ObservedState) -> None:
    assert plan(D(dag(start_ticks=(StartTick(TICK),))), observed, NOW) == []


def test_tick_skipped_while_previous_run_active_with_overlap_skip() -> None:
    actions = plan(
        D(dag(start_ticks=(StartTick(TICK),))),
        ObservedState(active=(run(1, RunStatus.RUNNING),)),
        NOW,
    )
    assert kinds(actions) == ["SkipTick"]
    assert isinstance(actions[0], SkipTick) and "overlapPolicy skip" in actions[0].reason


def test_overlap_all_queues_every_missed_tick() -> None:
    ticks = tuple(StartTick(TICK - timedelta(minutes=m)) for m in (2, 1, 0))
    actions = plan(D(dag(start_ticks=ticks, overlap_policy="all")), ObservedState(), NOW)
    assert kinds(actions) == ["Launch", "Launch", "Launch"]
    assert [a.start for a in actions if isinstance(a, Launch)] == [True, False, False]
    assert "maxActiveRuns 1 of d reached" in actions[1].reason


def test_overlap_latest_keeps_only_newest_tick() -> None:
    ticks = tuple(StartTick(TICK - timedelta(minutes=m)) for m in (2, 1, 0))
    actions = plan(
        D(dag(start_ticks=ticks, overlap_policy="latest")),
        ObservedState(active=(run(1, RunStatus.RUNNING),)),
        NOW,
    )
    assert kinds(actions) == ["SkipTick", "SkipTick", "Launch"]
    launch = actions[2]
    assert isinstance(launch, Launch) and launch.scheduled_at == TICK and not launch.start


def test_overlap_skip_catch_up_runs_first_missed_tick_only() -> None:
    ticks = tuple(StartTick(TICK - timedelta(minutes=m)) for m in (1, 0))
    actions = plan(D(dag(start_ticks=ticks)), ObservedState(), NOW)
    assert kinds(actions) == ["SkipTick", "Launch"] or kinds(actions) == ["Launch", "SkipTick"]


def test_skip_if_successful_since_previous_tick() -> None:
    prev = TICK - timedelta(hours=1)
    ok = run(1, RunStatus.SUCCEEDED, started_at=prev + timedelta(minutes=5), alive=None)
    d = dag(start_ticks=(StartTick(TICK, prev),), skip_if_successful=True)
    actions = plan(D(d), ObservedState(latest={"d": ok}), NOW)
    assert kinds(actions) == ["SkipTick"] and "skipIfSuccessful" in actions[0].reason
    old = replace(ok, started_at=prev - timedelta(minutes=5))
    assert kinds(plan(D(d), ObservedState(latest={"d": old}), NOW)) == ["Launch"]
    failed = replace(ok, status=RunStatus.FAILED)
    assert kinds(plan(D(d), ObservedState(latest={"d": failed}), NOW)) == ["Launch"]


def test_queued_runs_start_fifo_up_to_max_active_runs() -> None:
    observed = ObservedState(
        active=(
            run(1, RunStatus.RUNNING),
            run(2, RunStatus.QUEUED),
            run(3, RunStatus.QUEUED),
            run(4, RunStatus.QUEUED),
        )
    )
    assert plan(D(dag(max_active_runs=1)), observed, NOW) == []
    actions = plan(D(dag(max_active_runs=3)), observed, NOW)
    assert actions == [
        StartQueued("d", "r2", 2, reason="slot free in queue 'd'"),
        StartQueued("d", "r3", 3, reason="slot free in queue 'd'"),
    ]
    assert [(r.id, p) for r, p in queue_positions(D(dag()), observed)] == [(2, 1), (3, 2), (4, 3)]


def test_dispatched_queued_run_holds_its_slot() -> None:
    observed = ObservedState(
        active=(run(1, RunStatus.QUEUED, alive=True), run(2, RunStatus.QUEUED))
    )
    assert plan(D(dag()), observed, NOW) == []


def test_global_queue_limits_runs_across_dags() -> None:
    a = dag("a", queue="shared", max_active_runs=5)
    b = dag("b", queue="shared", max_active_runs=5)
    observed = ObservedState(
        active=(
            run(1, RunStatus.RUNNING, "a", queue="shared"),
            run(2, RunStatus.QUEUED, "b", queue="shared"),
            run(3, RunStatus.QUEUED, "a", queue="shared"),
        )
    )
    actions = plan(D(a, b, global_queues={"shared": 2}), observed, NOW)
    assert actions == [StartQueued("b", "r2", 2, reason="slot free in queue 'shared'")]


def test_unlimited_max_active_runs() -> None:
    observed = ObservedState(active=tuple(run(i, RunStatus.QUEUED) for i in range(1, 4)))
    assert kinds(plan(D(dag(max_active_runs=-1)), observed, NOW)) == ["StartQueued"] * 3


def test_runner_gone_marks_lost_and_frees_slot() -> None:
    observed = ObservedState(
        active=(run(1, RunStatus.RUNNING, alive=False), run(2, RunStatus.QUEUED))
    )
    actions = plan(D(dag()), observed, NOW)
    assert actions == [
        MarkLost("d", "r1", 1, reason="lost: runner process is gone"),
        StartQueued("d", "r2", 2, reason="slot free in queue 'd'"),
    ]


def test_dispatched_runner_died_before_claiming_is_lost() -> None:
    actions = plan(D(dag()), ObservedState(active=(run(1, RunStatus.QUEUED, alive=False),)), NOW)
    assert kinds(actions) == ["MarkLost"] and "before claiming" in actions[0].reason


def test_stop_request_stops_active_runs_and_completes() -> None:
    observed = ObservedState(active=(run(1, RunStatus.RUNNING), run(2, RunStatus.QUEUED)))
    desired = D(dag(), requests=(RequestView(7, "stop", "d"),))
    actions = plan(desired, observed, NOW)
    assert kinds(actions) == ["Stop", "Stop", "CompleteRequest"]
    assert actions[2] == CompleteRequest(7, "stopped 2 run(s)", reason="stop request")


def test_dequeue_request_aborts_only_the_queued_run() -> None:
    observed = ObservedState(active=(run(1, RunStatus.RUNNING), run(2, RunStatus.QUEUED)))
    desired = D(dag(max_active_runs=1), requests=(RequestView(8, "dequeue", "d", "r2"),))
    actions = plan(desired, observed, NOW)
    assert kinds(actions) == ["Stop", "CompleteRequest"]
    assert isinstance(actions[0], Stop) and actions[0].row == 2


def test_stop_schedule_stops_running_runs_once() -> None:
    d = dag(stop_ticks=(TICK,))
    observed = ObservedState(active=(run(1, RunStatus.RUNNING),))
    actions = plan(D(d), observed, NOW)
    assert actions == [
        Stop("d", "r1", 1, reason="stop schedule 2026-01-01T12:00:00Z", tick=("d", "stop", TICK))
    ]
    assert plan(D(d), replace(observed, decided=frozenset({("d", "stop", TICK)})), NOW) == []


def test_restart_schedule_stops_and_queues_a_new_run() -> None:
    d = dag(restart_ticks=(TICK,))
    observed = ObservedState(active=(run(1, RunStatus.RUNNING, params=("X=1",)),))
    actions = plan(D(d), observed, NOW)
    assert kinds(actions) == ["Stop", "Launch"]
    launch = actions[1]
    assert isinstance(launch, Launch) and launch.trigger == "restart" and not launch.start
    assert launch.params == ("X=1",)


def test_restart_wait_holds_the_new_run_back_without_taking_a_slot() -> None:
    d = dag(restart_ticks=(TICK,), restart_wait_seconds=30.0)
    actions = plan(D(d), ObservedState(active=(run(1, RunStatus.RUNNING),)), NOW)
    launch = actions[1]
    assert isinstance(launch, Launch) and not launch.start
    assert launch.not_before == NOW + timedelta(seconds=30)
    assert "queued until" in launch.reason and "restartWaitSec" in launch.reason
    # The old run is gone; the new one is queued until NOW + 30 s: nothing starts before ...
    later = dag(restart_wait_seconds=30.0)
    held = run(2, RunStatus.QUEUED, trigger="restart", queued_at=NOW + timedelta(seconds=30))
    other = run(3, RunStatus.QUEUED, "e")
    waiting = plan(D(later, dag("e")), ObservedState(active=(held, other)), NOW)
    assert [(type(a).__name__, a.row) for a in waiting] == [("StartQueued", 3)]  # type: ignore[attr-defined]
    # ... and it starts once the instant has passed.
    due = plan(D(later), ObservedState(active=(held,)), NOW + timedelta(seconds=31))
    assert kinds(due) == ["StartQueued"]


def test_removed_dag_queued_runs_aborted_running_runs_finish() -> None:
    observed = ObservedState(
        active=(run(1, RunStatus.RUNNING, "gone"), run(2, RunStatus.QUEUED, "gone"))
    )
    actions = plan(D(), observed, NOW)
    assert actions == [Stop("gone", "r2", 2, reason="DAG file removed; queued run aborted")]


def test_invalid_file_reported_once_per_version() -> None:
    bad = InvalidFile("bad", "/dags/bad.yaml", ("bad.yaml:1: steps: required",), key="bad@1:2")
    actions = plan(D(invalid=(bad,)), ObservedState(), NOW)
    assert kinds(actions) == ["RecordInvalid"]
    assert isinstance(actions[0], RecordInvalid) and "steps: required" in actions[0].reason
    assert (
        plan(D(invalid=(bad,)), ObservedState(reported_invalid=frozenset({"bad@1:2"})), NOW) == []
    )


@pytest.mark.parametrize(
    ("days", "age", "pruned"),
    [
        (30, timedelta(days=31), True),
        (30, timedelta(days=29), False),
        (0, timedelta(seconds=1), True),
        (-1, timedelta(days=3650), False),
    ],
)
def test_retention(days: int, age: timedelta, pruned: bool) -> None:
    old = run(1, RunStatus.SUCCEEDED, alive=None, finished_at=NOW - age)
    actions = plan(D(dag(hist_retention_days=days)), ObservedState(prunable=(old,)), NOW)
    assert kinds(actions) == (["Prune"] if pruned else [])


def test_retention_of_removed_dag_uses_default_and_batches() -> None:
    runs = tuple(
        run(i, RunStatus.FAILED, "gone", alive=None, finished_at=NOW - timedelta(days=40))
        for i in range(1, 6)
    )
    actions = plan(DesiredState(prune_batch=3), ObservedState(prunable=runs), NOW)
    assert len(actions) == 1 and isinstance(actions[0], Prune)
    assert actions[0].rows == (1, 2, 3) and "DAG file removed" in actions[0].reason


def test_active_runs_never_pruned() -> None:
    active = run(1, RunStatus.RUNNING, finished_at=NOW - timedelta(days=90))
    assert plan(D(dag(hist_retention_days=0)), ObservedState(prunable=(active,)), NOW) == []


def test_shutdown_launches_nothing_but_still_marks_lost() -> None:
    observed = ObservedState(
        active=(run(1, RunStatus.RUNNING, alive=False), run(2, RunStatus.QUEUED))
    )
    desired = D(dag(start_ticks=(StartTick(TICK),)), shutting_down=True)
    assert kinds(plan(desired, observed, NOW)) == ["MarkLost"]


def test_new_tick_waits_behind_older_queued_runs() -> None:
    observed = ObservedState(active=(run(2, RunStatus.QUEUED),))
    d = dag(start_ticks=(StartTick(TICK),), overlap_policy="all", max_active_runs=1)
    actions = plan(D(d), observed, NOW)
    assert kinds(actions) == ["StartQueued", "Launch"]
    assert isinstance(actions[1], Launch) and not actions[1].start
