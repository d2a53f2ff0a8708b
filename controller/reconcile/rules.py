"""The reconciler: `plan(desired, observed, now) -> list[Action]`, a pure function.

Every rule of convergence lives here and nowhere else, decided on plain values: no clock reads,
no I/O, no randomness (scheduled run ids derive from DAG + instant). The loop builds the inputs
(`controller.reconcile.desired`, `controller.reconcile.observed`), calls `plan`, and hands the
actions to `controller.loop.apply`; the plan view (`dagloop plan`, `GET /api/v2/plan`) calls the
same function through `controller.reconcile.snapshot` and shows the actions with their reasons.
A converged world yields an empty plan.

Rules, in the order they are applied:
1. Invalid DAG files are reported once per file version (`RecordInvalid`).
2. Lost runs: an active run whose runner is gone (the observer checked pid + process start time
   or the heartbeat) is marked failed (`MarkLost`); its slot is free again.
3. Requests from the CLI: `stop` (one run or all active runs of a DAG), `dequeue` (a queued run),
   `restart` (stop, then a new run with the same params that starts when the slot frees).
4. Stop and restart schedules: stop the DAG's active runs at the tick (restart also queues a
   new run). Every tick is decided once; the decision is remembered by the loop (`decided`).
5. Start schedules: ticks within the window (the current minute, or `catchupWindowSec`) that
   have no run yet. Guards, as Dagu's: `skipIfSuccessful` (the latest run succeeded since the
   previous tick), and `overlapPolicy` — `skip` (default): skip while the DAG has an active run;
   `all`: queue every tick; `latest`: only the newest pending tick, queued.
6. Queues, FIFO: queued runs (oldest first, then this pass's new ticks) start while both the DAG's
   `maxActiveRuns` (default 1, negative = unlimited; holds for *every* run) and the DAG's global
   queue (`queues.config[].maxActiveRuns`) have a free slot. Queued runs of a DAG whose file was
   removed are aborted (their spec is gone); a *running* run of a removed DAG finishes.
7. Retention: finished runs older than the DAG's `histRetentionDays` are pruned (0: right after
   the run finishes; negative: never; 30 for DAGs whose file was removed), in batches.
Nothing is launched while the controller shuts down.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from controller.ids import scheduled_run_id
from controller.utc import iso_utc
from model.status import RunStatus

DEFAULT_RETENTION_DAYS = 30
TickKind = Literal["start", "stop", "restart"]
TickKey = tuple[str, str, datetime]  # (dag name, tick kind, instant)


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class StartTick:
    """A start-schedule instant of a DAG and the instant before it (for skipIfSuccessful)."""

    at: datetime
    previous: datetime | None = None


@dataclass(frozen=True)
class DagDesired:
    """What a valid DAG file asks for."""

    name: str
    file: str = ""
    queue: str = ""  # the DAG's queue: `queue:` or its own name
    max_active_runs: int = 1
    hist_retention_days: int = DEFAULT_RETENTION_DAYS
    skip_if_successful: bool = False
    overlap_policy: str = "skip"
    restart_wait_seconds: float = 0.0  # restartWaitSec: a restart's new run waits this long
    start_ticks: tuple[StartTick, ...] = ()  # recent instants, within the window
    stop_ticks: tuple[datetime, ...] = ()
    restart_ticks: tuple[datetime, ...] = ()
    next_start_at: datetime | None = None
    next_stop_at: datetime | None = None
    next_restart_at: datetime | None = None
    params: tuple[str, ...] = ()  # default params (`NAME=value`) for scheduled runs

    @property
    def queue_name(self) -> str:
        """The queue this DAG's runs wait in."""
        return self.queue or self.name


@dataclass(frozen=True)
class InvalidFile:
    """A DAG file that failed to load; `key` changes whenever the file does."""

    file_name: str
    path: str
    errors: tuple[str, ...]
    key: str
    using: str = ""  # the last good version still scheduled (`sha256:…` prefix), or ''
    dag_name: str = ""  # that version's DAG name


@dataclass(frozen=True)
class RequestView:
    """An open request written by the CLI."""

    id: int
    kind: str
    dag_name: str
    run_id: str = ""


@dataclass(frozen=True)
class DesiredState:
    """Everything the user asked for, as of one pass."""

    dags: Mapping[str, DagDesired] = field(default_factory=dict)
    invalid: tuple[InvalidFile, ...] = ()
    requests: tuple[RequestView, ...] = ()
    global_queues: Mapping[str, int] = field(default_factory=dict)  # name -> maxActiveRuns
    default_retention_days: int = DEFAULT_RETENTION_DAYS
    shutting_down: bool = False
    prune_batch: int = 200


@dataclass(frozen=True)
class RunView:
    """What the planner needs to know about one run row."""

    id: int
    dag_name: str
    run_id: str
    status: RunStatus
    trigger: str = "manual"
    queue: str = ""
    params: tuple[str, ...] = ()
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    queued_at: datetime | None = None  # in the future: waits until then (restartWaitSec)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Liveness, filled by the observer: for running/waiting runs whether the runner lives; for
    # queued runs None if no runner was spawned, True/False if one was spawned and lives/died.
    alive: bool | None = None


@dataclass(frozen=True)
class ObservedState:
    """The world as recorded in the store, plus liveness and the loop's memory."""

    active: tuple[RunView, ...] = ()  # running, waiting and queued runs, oldest first
    latest: Mapping[str, RunView] = field(default_factory=dict)  # latest run of each DAG
    scheduled: frozenset[tuple[str, datetime]] = frozenset()  # (dag, instant) with a run row
    decided: frozenset[TickKey] = frozenset()  # ticks decided by earlier passes
    prunable: tuple[RunView, ...] = ()  # finished runs, candidates for retention
    reported_invalid: frozenset[str] = frozenset()  # InvalidFile.key already reported


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Launch:
    """Create a run (a QUEUED row) and, if `start`, spawn its runner now."""

    dag_name: str
    run_id: str
    trigger: str
    start: bool
    reason: str
    scheduled_at: datetime | None = None
    params: tuple[str, ...] = ()
    tick: TickKey | None = None
    not_before: datetime | None = None  # queued until then (restartWaitSec)


@dataclass(frozen=True)
class StartQueued:
    """Spawn the runner of an existing queued run."""

    dag_name: str
    run_id: str
    row: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """Stop a running run (its runner escalates), or abort a queued one."""

    dag_name: str
    run_id: str
    row: int
    reason: str
    tick: TickKey | None = None


@dataclass(frozen=True)
class MarkLost:
    """Record a run whose runner is gone as failed ("lost: …") and kill its leftovers."""

    dag_name: str
    run_id: str
    row: int
    reason: str


@dataclass(frozen=True)
class Prune:
    """Delete finished runs of a DAG with their logs."""

    dag_name: str
    rows: tuple[int, ...]
    run_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class SkipTick:
    """A tick decided not to run (counted in `dagloop_missed_runs_total` for start ticks)."""

    dag_name: str
    kind: str
    at: datetime
    reason: str

    @property
    def tick(self) -> TickKey:
        """The decided tick."""
        return (self.dag_name, self.kind, self.at)


@dataclass(frozen=True)
class RecordInvalid:
    """Report an invalid DAG file (log it; `plan` and the API show it)."""

    file_name: str
    path: str
    errors: tuple[str, ...]
    key: str
    reason: str


@dataclass(frozen=True)
class CompleteRequest:
    """Mark a CLI request as carried out."""

    request_id: int
    result: str
    reason: str


Action = Launch | StartQueued | Stop | MarkLost | Prune | SkipTick | RecordInvalid | CompleteRequest


def tick_of(action: Action) -> TickKey | None:
    """The tick an action decides, if any (the loop remembers it in `decided`)."""
    if isinstance(action, SkipTick):
        return action.tick
    if isinstance(action, Launch | Stop):
        return action.tick
    return None


# ----------------------------------------------------------------------------- the plan


def _iso(t: datetime | None) -> str:
    return iso_utc(t) if t is not None else "-"


def _is_running(run: RunView) -> bool:
    return run.status in (RunStatus.RUNNING, RunStatus.WAITING)


@dataclass
class _Item:
    """A queued run in the FIFO pass: an existing row or a Launch of this pass."""

    dag_name: str
    queue: str
    run: RunView | None = None
    launch: Launch | None = None


def plan(desired: DesiredState, observed: ObservedState, now: datetime) -> list[Action]:
    """What to do now to bring `observed` to `desired`. Pure; `[]` when converged."""
    out = _Plan()
    out.actions.extend(_invalid_files(desired, observed))  # 1.
    live = _lost_runs(observed, out.actions)  # 2.
    for req in desired.requests:  # 3.
        _request(req, desired, live, now, out)

    # Only DAGs with a tick in their window need rules 4 and 5 (most DAGs, most passes: none).
    due = [d for d in desired.dags.values() if d.start_ticks or d.stop_ticks or d.restart_ticks]
    for dag in due:  # 4.
        _stop_and_restart_ticks(dag, desired, observed, live, now, out)
    new_items: list[_Item] = []
    if not desired.shutting_down:  # 5.
        for dag in due:
            if dag.start_ticks:
                new_items.extend(_start_ticks(dag, observed, live, out.stopping, out.actions))

    # 6. queues (FIFO): existing queued rows first, then this pass's new runs
    items = [*_queued_items(live), *out.extra, *new_items]
    out.actions.extend(_queue_pass(desired, live, out.stopping, items, now))
    out.actions.extend(_prune(desired, observed, now))  # 7.
    return out.actions


@dataclass
class _Plan:
    """The plan being built: its actions in order, the rows it stops, and the runs it creates
    that wait for a queue slot."""

    actions: list[Action] = field(default_factory=list)
    stopping: set[int] = field(default_factory=set)
    extra: list[_Item] = field(default_factory=list)

    def stop(self, run: RunView, reason: str, tick: TickKey | None = None) -> None:
        """Stop `run` once, whichever rules ask for it."""
        if run.id in self.stopping:
            return
        self.stopping.add(run.id)
        self.actions.append(Stop(run.dag_name, run.run_id, run.id, reason=reason, tick=tick))


def invalid_reason(bad: InvalidFile) -> str:
    """Why a file is reported: its errors, and the last good version used instead, if any."""
    errors = "; ".join(bad.errors) or "unknown error"
    if bad.using:
        return (
            f"using revision {bad.using} of DAG {bad.dag_name}: "
            f"the current file is invalid: {errors}"
        )
    return f"invalid DAG file: {errors}"


def _invalid_files(desired: DesiredState, observed: ObservedState) -> list[Action]:
    """Rule 1: each invalid file version is reported once."""
    return [
        RecordInvalid(
            bad.file_name,
            bad.path,
            bad.errors,
            bad.key,
            reason=invalid_reason(bad),
        )
        for bad in desired.invalid
        if bad.key not in observed.reported_invalid
    ]


def _lost_runs(observed: ObservedState, actions: list[Action]) -> list[RunView]:
    """Rule 2: mark the runs whose runner is gone lost; returns the others (the live runs)."""
    live: list[RunView] = []
    for run in observed.active:
        if run.alive is False:
            why = (
                "lost: runner process is gone"
                if _is_running(run)
                else "lost: runner exited before claiming the run"
            )
            actions.append(MarkLost(run.dag_name, run.run_id, run.id, reason=why))
        else:
            live.append(run)
    return live


def _request(
    req: RequestView, desired: DesiredState, live: list[RunView], now: datetime, out: _Plan
) -> None:
    """Rule 3: one CLI request (stop, dequeue, restart), completed in the same plan."""
    targets = [
        r for r in live if r.dag_name == req.dag_name and (not req.run_id or r.run_id == req.run_id)
    ]
    if req.kind == "stop":
        for r in targets:
            out.stop(r, f"stop requested (request #{req.id})")
        out.actions.append(
            CompleteRequest(req.id, f"stopped {len(targets)} run(s)", reason="stop request")
        )
    elif req.kind == "dequeue":
        queued = [r for r in targets if r.status == RunStatus.QUEUED and r.alive is None]
        for r in queued:
            out.stop(r, f"dequeued (request #{req.id})")
        result = "dequeued" if queued else "not queued"
        out.actions.append(CompleteRequest(req.id, result, reason="dequeue request"))
    elif req.kind == "restart":
        dag = desired.dags.get(req.dag_name)
        running = [r for r in targets if _is_running(r)]
        for r in running:
            out.stop(r, f"restart requested (request #{req.id})")
        if dag is not None and not desired.shutting_down:
            params = running[0].params if running else dag.params
            launch = Launch(
                dag.name,
                _request_run_id(dag.name, req.id, now),
                "restart",
                False,
                reason=f"restart requested (request #{req.id})",
                params=params,
                not_before=_restart_at(dag, now),
            )
            out.extra.append(_Item(dag.name, dag.queue_name, launch=launch))
        result = "restarted" if dag is not None else "DAG not found"
        out.actions.append(CompleteRequest(req.id, result, reason="restart request"))


def _stop_and_restart_ticks(
    dag: DagDesired,
    desired: DesiredState,
    observed: ObservedState,
    live: list[RunView],
    now: datetime,
    out: _Plan,
) -> None:
    """Rule 4: the DAG's stop and restart ticks not decided yet."""
    for kind, ticks in (("stop", dag.stop_ticks), ("restart", dag.restart_ticks)):
        for at in ticks:
            key: TickKey = (dag.name, kind, at)
            if key in observed.decided:
                continue
            running = [r for r in live if r.dag_name == dag.name and _is_running(r)]
            if kind == "stop":
                if not running:
                    out.actions.append(
                        SkipTick(dag.name, kind, at, "stop schedule: nothing running")
                    )
                for i, r in enumerate(running):
                    out.stop(r, f"stop schedule {_iso(at)}", tick=key if i == 0 else None)
                continue
            if desired.shutting_down:
                continue
            for r in running:
                out.stop(r, f"restart schedule {_iso(at)}")
            params = running[0].params if running else dag.params
            launch = Launch(
                dag.name,
                scheduled_run_id(dag.name + "#restart", at.timestamp()),
                "restart",
                False,
                reason=f"restart schedule {_iso(at)}",
                params=params,
                tick=key,
                not_before=_restart_at(dag, now),
            )
            out.extra.append(_Item(dag.name, dag.queue_name, launch=launch))


def _restart_at(dag: DagDesired, now: datetime) -> datetime | None:
    """When a restart's new run may start: `restartWaitSec` after the stop (None: at once)."""
    if dag.restart_wait_seconds <= 0:
        return None
    return now + timedelta(seconds=dag.restart_wait_seconds)


def _request_run_id(dag_name: str, request_id: int, now: datetime) -> str:
    """A deterministic id for the run a request creates (repeat-safe within the pass)."""
    return scheduled_run_id(f"{dag_name}#request{request_id}", now.timestamp())


def _start_ticks(
    dag: DagDesired,
    observed: ObservedState,
    live: Sequence[RunView],
    stopping: set[int],
    actions: list[Action],
) -> list[_Item]:
    pending = sorted(
        (
            t
            for t in dag.start_ticks
            if (dag.name, t.at) not in observed.scheduled
            and (dag.name, "start", t.at) not in observed.decided
        ),
        key=lambda t: t.at,
    )
    if not pending:
        return []
    pending.sort(key=lambda t: t.at)
    if dag.overlap_policy == "latest" and len(pending) > 1:
        for t in pending[:-1]:
            actions.append(
                SkipTick(
                    dag.name,
                    "start",
                    t.at,
                    f"superseded by the tick {_iso(pending[-1].at)} (overlapPolicy latest)",
                )
            )
        pending = pending[-1:]
    active = [r for r in live if r.dag_name == dag.name and r.id not in stopping]
    latest = observed.latest.get(dag.name)
    items: list[_Item] = []
    for t in pending:
        if (
            dag.skip_if_successful
            and latest is not None
            and latest.status.is_success()
            and latest.started_at is not None
            and (t.previous is None or latest.started_at >= t.previous)
        ):
            actions.append(
                SkipTick(
                    dag.name,
                    "start",
                    t.at,
                    f"skipIfSuccessful: run {latest.run_id} succeeded since the previous tick",
                )
            )
            continue
        if dag.overlap_policy == "skip" and (active or items):
            busy = active[0].run_id if active else items[0].launch.run_id  # type: ignore[union-attr]
            actions.append(
                SkipTick(
                    dag.name,
                    "start",
                    t.at,
                    f"run {busy} is still active (overlapPolicy skip)",
                )
            )
            continue
        launch = Launch(
            dag.name,
            scheduled_run_id(dag.name, t.at.timestamp()),
            "schedule",
            False,
            reason=f"scheduled at {_iso(t.at)}",
            scheduled_at=t.at,
            params=dag.params,
            tick=(dag.name, "start", t.at),
        )
        items.append(_Item(dag.name, dag.queue_name, launch=launch))
    return items


def _queued_items(live: Sequence[RunView]) -> list[_Item]:
    return [
        _Item(r.dag_name, r.queue or r.dag_name, run=r)
        for r in live
        if r.status == RunStatus.QUEUED and r.alive is None
    ]


def _queue_pass(
    desired: DesiredState,
    live: Sequence[RunView],
    stopping: set[int],
    items: Sequence[_Item],
    now: datetime,
) -> list[Action]:
    """Start queued runs FIFO while their DAG and their global queue have free slots; a run
    queued until a later instant (restartWaitSec) waits for it without taking a slot."""
    running_by_dag: dict[str, int] = defaultdict(int)
    running_by_queue: dict[str, int] = defaultdict(int)
    for r in live:
        # Running runs and queued runs whose runner was spawned hold a slot (also while stopping).
        if _is_running(r) or (r.status == RunStatus.QUEUED and r.alive):
            running_by_dag[r.dag_name] += 1
            running_by_queue[r.queue or r.dag_name] += 1
    out: list[Action] = []
    for item in items:
        dag = desired.dags.get(item.dag_name)
        run = item.run
        if run is not None and run.id in stopping:
            continue
        if dag is None:
            if run is not None:
                out.append(
                    Stop(
                        run.dag_name,
                        run.run_id,
                        run.id,
                        reason="DAG file removed; queued run aborted",
                    )
                )
            continue
        queue = item.queue if run is not None else dag.queue_name
        dag_free = dag.max_active_runs < 0 or running_by_dag[dag.name] < max(dag.max_active_runs, 1)
        limit = desired.global_queues.get(queue)
        queue_free = limit is None or limit < 0 or running_by_queue[queue] < max(limit, 1)
        until = item.launch.not_before if item.launch is not None else None
        if run is not None and run.trigger == "restart" and run.queued_at is not None:
            until = run.queued_at  # a restart's run is queued as of its restartWaitSec
        waiting = until is not None and until > now
        start = dag_free and queue_free and not desired.shutting_down and not waiting
        if start:
            running_by_dag[dag.name] += 1
            running_by_queue[queue] += 1
        if item.launch is not None:
            launch = item.launch
            if start:
                reason = launch.reason
            elif waiting:
                reason = f"{launch.reason}; queued until {_iso(until)} (restartWaitSec)"
            else:
                reason = f"{launch.reason}; queued: {_why_full(dag, queue, limit, dag_free)}"
            out.append(
                Launch(
                    launch.dag_name,
                    launch.run_id,
                    launch.trigger,
                    start,
                    reason,
                    launch.scheduled_at,
                    launch.params,
                    launch.tick,
                    launch.not_before,
                )
            )
        elif start and run is not None:
            out.append(
                StartQueued(
                    run.dag_name, run.run_id, run.id, reason=f"slot free in queue {queue!r}"
                )
            )
    return out


def _why_full(dag: DagDesired, queue: str, limit: int | None, dag_free: bool) -> str:
    if not dag_free:
        return f"maxActiveRuns {max(dag.max_active_runs, 1)} of {dag.name} reached"
    return f"queue {queue!r} is full (maxActiveRuns {limit})"


def queue_positions(desired: DesiredState, observed: ObservedState) -> list[tuple[RunView, int]]:
    """Queued runs not yet started with their 1-based position in their queue (for `plan`)."""
    counters: dict[str, int] = defaultdict(int)
    out = []
    for item in _queued_items([r for r in observed.active if r.alive is not False]):
        assert item.run is not None
        counters[item.queue] += 1
        out.append((item.run, counters[item.queue]))
    return out


def _prune(desired: DesiredState, observed: ObservedState, now: datetime) -> list[Action]:
    batches: dict[str, list[RunView]] = defaultdict(list)
    days_of: dict[str, int] = {}
    budget = desired.prune_batch
    for run in observed.prunable:
        if budget <= 0:
            break
        if run.status.is_active() or run.finished_at is None:
            continue
        dag = desired.dags.get(run.dag_name)
        days = dag.hist_retention_days if dag is not None else desired.default_retention_days
        if days < 0 or run.finished_at > now - timedelta(days=days):
            continue
        batches[run.dag_name].append(run)
        days_of[run.dag_name] = days
        budget -= 1
    out: list[Action] = []
    for name, runs in batches.items():
        days = days_of[name]
        why = (
            "histRetentionDays 0: history deleted after the run finished"
            if days == 0
            else f"finished more than {days} day(s) ago (histRetentionDays {days})"
        )
        if name not in desired.dags:
            why += "; DAG file removed"
        out.append(
            Prune(name, tuple(r.id for r in runs), tuple(r.run_id for r in runs), reason=why)
        )
    return out
