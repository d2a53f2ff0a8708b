"""`dagloop plan [NAME] [--json]`: what the controller would do now, and why.

Computed by the same `reconcile.plan` the loop runs, on a read of the DAG directory and the
store, changing nothing; it works whether or not a controller runs. Shows: actions (due runs,
queue starts, stops, lost runs, pruning, skipped ticks) with their reasons, queued runs with
their position, invalid DAG files with their errors, and the next fire time of every schedule.
Exit 0. Dispatched by `controller.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from datetime import datetime
from typing import Any

from controller.cmdutil import add_common, settings_from
from controller.reconcile import Action, queue_positions
from controller.store import Store
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """Optional NAME (a DAG name) and `--json`."""
    add_common(parser)
    parser.add_argument("name", nargs="?", default=None, help="only this DAG")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, tuple):
        return [_value(x) for x in v]
    return v


def action_dict(action: Action) -> dict[str, Any]:
    """An action as JSON: `{"action": "Launch", ...fields}`."""
    out: dict[str, Any] = {"action": type(action).__name__}
    for f in fields(action):
        out[f.name] = _value(getattr(action, f.name))
    return out


def run(args: argparse.Namespace) -> int:
    """Print the plan."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"dagloop plan: {exc}", file=sys.stderr)
        return 1
    from controller.loop import Controller

    store = Store(settings.db_path)
    ctl = Controller(settings, store=store, spawn_runners=False)
    ctl.refresh_catalog(force=True)
    snap = ctl.snapshot()
    name = args.name

    def mine(dag: str) -> bool:
        return name is None or dag == name

    actions = [a for a in snap.actions if mine(getattr(a, "dag_name", getattr(a, "file_name", "")))]
    queued = [
        (r, pos) for r, pos in queue_positions(snap.desired, snap.observed) if mine(r.dag_name)
    ]
    schedules = [
        {
            "dag": d.name,
            "file": d.file,
            "nextStartAt": _value(d.next_start_at),
            "nextStopAt": _value(d.next_stop_at),
            "nextRestartAt": _value(d.next_restart_at),
        }
        for d in sorted(snap.desired.dags.values(), key=lambda d: d.name)
        if mine(d.name) and (d.next_start_at or d.next_stop_at or d.next_restart_at)
    ]
    invalid = [
        {"file": b.path, "fileName": b.file_name, "errors": list(b.errors)}
        for b in snap.desired.invalid
        if mine(b.file_name)
    ]
    running = [
        {"dag": r.dag_name, "runId": r.run_id, "status": r.status.label, "alive": r.alive}
        for r in snap.observed.active
        if mine(r.dag_name) and r.status.label != "queued"
    ]
    if args.json:
        doc = {
            "now": _value(snap.now),
            "actions": [action_dict(a) for a in actions],
            "queued": [
                {"dag": r.dag_name, "runId": r.run_id, "queue": r.queue, "position": pos}
                for r, pos in queued
            ],
            "running": running,
            "invalid": invalid,
            "schedules": schedules,
        }
        print(json.dumps(doc, indent=2))
        return 0
    lines = [f"Plan at {_value(snap.now)}:"]
    if not actions:
        lines.append("  nothing to do (converged)")
    for a in actions:
        d = action_dict(a)
        who = d.get("dag_name") or d.get("file_name") or ""
        run_id = d.get("run_id") or ""
        lines.append(f"  {d['action']:<14} {who} {run_id}".rstrip() + f": {a.reason}")
    if running:
        lines.append("Running:")
        lines += [f"  {r['dag']} {r['runId']} ({r['status']})" for r in running]
    if queued:
        lines.append("Queued:")
        lines += [
            f"  #{pos} in {r.queue or r.dag_name}: {r.dag_name} {r.run_id}" for r, pos in queued
        ]
    if invalid:
        lines.append("Invalid DAG files:")
        for b in invalid:
            lines.append(f"  {b['file']}")
            lines += [f"    {e}" for e in b["errors"]]
    if schedules:
        lines.append("Next fire times:")
        for s in schedules:
            parts = [
                f"{k} {s[key]}"
                for k, key in (
                    ("start", "nextStartAt"),
                    ("stop", "nextStopAt"),
                    ("restart", "nextRestartAt"),
                )
                if s[key]
            ]
            lines.append(f"  {s['dag']}: " + ", ".join(parts))
    print("\n".join(lines))
    return 0
