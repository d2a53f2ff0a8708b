"""The controller's plan as a document: what the loop would do now, and why.

One builder for `dagloop plan --json` (`controller.commands.plan`) and `GET /api/v2/plan`
(`api.system.Plan`). `plan_document` reads a snapshot — the DAG catalog, the store's open
requests and runs — with `controller.reconcile.snapshot.take_snapshot`, which plans with the same
`reconcile.rules.plan` as the loop; `render_plan` turns that snapshot into the document and is
pure. Nothing here constructs the loop, applies an action or starts a process: the API server
imports this module.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from controller.catalog import Catalog, catalog_for
from controller.reconcile.desired import DesiredBuilder, last_run_text
from controller.reconcile.observed import default_liveness
from controller.reconcile.rules import Action, invalid_reason, queue_positions
from controller.reconcile.snapshot import Snapshot, take_snapshot
from controller.store.store import Store
from controller.utc import iso_utc
from model.config import Settings


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso_utc(v)
    if isinstance(v, tuple):
        return [_value(x) for x in v]
    return v


def action_dict(action: Action) -> dict[str, Any]:
    """An action as JSON: `{"action": "Launch", ...fields}`."""
    out: dict[str, Any] = {"action": type(action).__name__}
    for f in fields(action):
        out[f.name] = _value(getattr(action, f.name))
    return out


def render_plan(snap: Snapshot, *, name: str | None = None) -> dict[str, Any]:
    """The plan document of a snapshot (pure): actions with reasons, running and queued runs,
    invalid files, schedules; with `name`, only what concerns that DAG."""

    def mine(dag: str) -> bool:
        return name is None or dag == name

    actions = [a for a in snap.actions if mine(getattr(a, "dag_name", getattr(a, "file_name", "")))]
    return {
        "now": _value(snap.now),
        "actions": [action_dict(a) for a in actions],
        "queued": [
            {"dag": r.dag_name, "runId": r.run_id, "queue": r.queue, "position": pos}
            for r, pos in queue_positions(snap.desired, snap.observed)
            if mine(r.dag_name)
        ],
        "running": [
            {"dag": r.dag_name, "runId": r.run_id, "status": r.status.label, "alive": r.alive}
            for r in snap.observed.active
            if mine(r.dag_name) and r.status.label != "queued"
        ],
        "invalid": [
            {
                "file": b.path,
                "fileName": b.file_name,
                "errors": list(b.errors),
                "using": b.using or None,
                "reason": invalid_reason(b),
            }
            for b in snap.desired.invalid
            if mine(b.file_name)
        ],
        "schedules": [
            {
                "dag": d.name,
                "file": d.file,
                "nextStartAt": _value(d.next_start_at),
                "nextStopAt": _value(d.next_stop_at),
                "nextRestartAt": _value(d.next_restart_at),
            }
            for d in sorted(snap.desired.dags.values(), key=lambda d: d.name)
            if mine(d.name) and (d.next_start_at or d.next_stop_at or d.next_restart_at)
        ],
    }


def plan_document(
    *,
    settings: Settings,
    store: Store,
    catalog: Catalog | None = None,
    name: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The plan at `now` (default: the wall clock) as a controller that just started would
    compute it: no runner spawned by it, no tick decided yet, no invalid file reported yet.

    `catalog` lets a long-lived caller (the API) reuse its loaded DAGs; it is rescanned first.
    `name` keeps only what concerns that DAG.
    """
    if catalog is None:
        catalog = catalog_for(settings)
        catalog.last_run_text = last_run_text(store)
    catalog.refresh()
    snap = take_snapshot(
        store,
        DesiredBuilder(settings, catalog),
        now=now if now is not None else datetime.now(UTC),
        liveness=default_liveness(settings.heartbeat_timeout_seconds),
        worker_timeout_seconds=settings.heartbeat_timeout_seconds,
    )
    return render_plan(snap, name=name)
