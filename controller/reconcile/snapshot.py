"""One pass's view of the world and its plan: desired and observed state at `now`, and the
actions `rules.plan` returns for them.

`take_snapshot` reads (the catalog through a `DesiredBuilder`, the store's open requests, active
runs and history through `observe`) and then calls the pure `rules.plan`; it changes nothing.
What only a running loop knows — the runners it spawned (`dispatched`), the ticks it decided
(`decided`), the invalid files it reported — comes in as arguments, empty for a reader that is
not the loop.

Callers: the plan view (`controller.views.plan`, for `dagloop plan` and `GET /api/v2/plan`),
which must compute exactly what the loop (`controller.loop.controller.Controller.snapshot`)
would, without constructing it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.reconcile.desired import DesiredBuilder
from controller.reconcile.observed import Liveness, PruneCache, observe
from controller.reconcile.rules import (
    Action,
    DesiredState,
    ObservedState,
    RequestView,
    TickKey,
    plan,
)
from controller.store.store import Store

# The request kinds the reconciler acts on; `enqueue` and `retry` write runs themselves.
PLANNED_REQUEST_KINDS = ("stop", "dequeue", "restart")


@dataclass(frozen=True)
class Snapshot:
    """One pass's inputs and plan."""

    now: datetime
    desired: DesiredState
    observed: ObservedState
    actions: list[Action]


def open_requests(store: Store) -> tuple[RequestView, ...]:
    """The open CLI requests the reconciler decides on, oldest first."""
    return tuple(
        RequestView(r.id, r.kind, r.dag_name, r.run_id)
        for r in store.list_open_requests()
        if r.kind in PLANNED_REQUEST_KINDS
    )


def take_snapshot(
    store: Store,
    builder: DesiredBuilder,
    *,
    now: datetime,
    liveness: Liveness,
    worker_timeout_seconds: float,
    dispatched: Mapping[int, Callable[[], bool]] | None = None,
    decided: frozenset[TickKey] = frozenset(),
    reported_invalid: frozenset[str] = frozenset(),
    prune_cache: PruneCache | None = None,
    shutting_down: bool = False,
    grace_from: float = 0.0,
) -> Snapshot:
    """Read desired and observed state at `now` and plan on them, changing nothing.

    `builder`'s catalog must have been refreshed by the caller. The latest run is read only for
    DAGs that need it (`skipIfSuccessful` with a due start tick). `grace_from`: see
    `liveness.beat_fresh`."""
    desired = builder.build(now, requests=open_requests(store), shutting_down=shutting_down)
    need_latest = [d.name for d in desired.dags.values() if d.skip_if_successful and d.start_ticks]
    observed = observe(
        store,
        now=now,
        window_seconds=builder.max_window_seconds(),
        dag_names=need_latest,
        liveness=liveness,
        dispatched=dispatched,
        decided=decided,
        reported_invalid=reported_invalid,
        retention_days=builder.retention_days(),
        default_retention_days=desired.default_retention_days,
        prune_cache=prune_cache,
        worker_timeout_seconds=worker_timeout_seconds,
        grace_from=grace_from,
    )
    return Snapshot(now, desired, observed, plan(desired, observed, now))
