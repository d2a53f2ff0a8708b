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

from controller.commands.common import add_common, add_json, fail, settings_from
from controller.store.retry import open_store
from controller.views.plan import plan_document
from model.config import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    """Optional NAME (a DAG name) and `--json`."""
    add_common(parser)
    parser.add_argument("name", nargs="?", default=None, help="only this DAG")
    add_json(parser, "the plan document (as GET /api/v2/plan)")


def run(args: argparse.Namespace) -> int:
    """Print the plan."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("plan", exc)
    with open_store(settings) as store:
        doc = plan_document(settings=settings, store=store, name=args.name)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    lines = [f"Plan at {doc['now']}:"]
    if not doc["actions"]:
        lines.append("  nothing to do (converged)")
    for d in doc["actions"]:
        who = d.get("dag_name") or d.get("file_name") or ""
        run_id = d.get("run_id") or ""
        lines.append(f"  {d['action']:<14} {who} {run_id}".rstrip() + f": {d['reason']}")
    running, queued, invalid, schedules = (
        doc["running"],
        doc["queued"],
        doc["invalid"],
        doc["schedules"],
    )
    if running:
        lines.append("Running:")
        lines += [f"  {r['dag']} {r['runId']} ({r['status']})" for r in running]
    if queued:
        lines.append("Queued:")
        lines += [
            f"  #{q['position']} in {q['queue'] or q['dag']}: {q['dag']} {q['runId']}"
            for q in queued
        ]
    if invalid:
        lines.append("Invalid DAG files:")
        for b in invalid:
            lines.append(f"  {b['file']}")
            if b["using"]:
                lines.append(f"    {b['reason']}")
            else:
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
