"""`dagloop stop NAME [--run-id ID]`: stop running runs of a DAG from any terminal.

Records `stop_requested_at` and sends SIGTERM to the recorded runner (after checking it is
that very process); a run whose runner is gone is reaped as lost instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from controller.commands.common import (
    add_common,
    add_json,
    add_quiet,
    fail,
    print_json,
    settings_from,
)
from controller.store.filters import RunFilter

if TYPE_CHECKING:
    from controller.store.records import RunRecord
    from controller.store.store import Store
    from model.config import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `stop`."""
    add_common(parser)
    add_quiet(parser)
    parser.add_argument("dag", help="DAG name")
    parser.add_argument("-r", "--run-id", help="run id (default: every running run of the DAG)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the end")
    add_json(parser, '{"runs": [{"name", "dagRunId", "outcome"}]} (outcome: stopping or lost)')


def run(args: argparse.Namespace) -> int:
    """Stop; exit 0, or 1 when no run of the DAG is running."""
    from controller.store.records import NotFound
    from controller.store.retry import open_store
    from model.config import ConfigError
    from model.status import RunStatus

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("stop", exc)
    if not settings.database_url and not settings.db_path.exists():
        return fail("stop", f"no running run of {args.dag!r}")
    with open_store(settings) as store:
        if args.run_id:
            try:
                runs = [store.get_run(args.dag, args.run_id)]
            except NotFound as exc:
                return fail("stop", exc)
        else:
            runs = store.list_runs(RunFilter(dag_name=args.dag, statuses=(RunStatus.RUNNING,)))
        runs = [r for r in runs if r.status == RunStatus.RUNNING]
        if not runs:
            return fail("stop", f"no running run of {args.dag!r}")
        outcomes = [(r, _stop_one(store, r, settings)) for r in runs]
        for r, outcome in outcomes:
            if args.quiet or args.json:
                continue
            if outcome == "lost":
                print(f"{r.dag_name} {r.run_id}: runner gone, recorded as lost")
            else:
                where = f" (on {r.host})" if outcome == "remote" else ""
                print(f"stopping {r.dag_name} {r.run_id}{where}")
        signalled = [r for r, outcome in outcomes if outcome != "lost"]
        deadline = time.monotonic() + args.wait
        while signalled and time.monotonic() < deadline:
            signalled = [r for r in signalled if store.get_run_by_id(r.id).status.is_active()]
            time.sleep(0.05)
    if args.json:
        print_json({"runs": [_stop_doc(r, outcome) for r, outcome in outcomes]})
    return 0


def _stop_one(store: Store, r: RunRecord, settings: Settings) -> str:
    """Request the stop of one running run: `remote` (another host's worker signals its
    runner), `local` (SIGTERM sent here) or `lost` (its runner is gone: recorded so)."""
    from controller.liveness import on_this_host, reap_lost_run, runner_alive, runner_process_alive

    store.update_run(r.id, stop_requested_at=time.time())
    alive = runner_alive(r, heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds)
    if alive and not on_this_host(r):
        return "remote"  # its worker sees stop_requested_at and signals the runner there
    # A runner process of this host is signalled even when its heartbeat is late (just after
    # a database outage, on a loaded machine): it is there, and records its own abort.
    if r.pid is not None and (alive or runner_process_alive(r)):
        try:
            os.kill(r.pid, signal.SIGTERM)
            return "local"
        except ProcessLookupError:
            pass
    reap_lost_run(store, r, "runner process is gone")
    return "lost"


def _stop_doc(r: RunRecord, outcome: str) -> dict[str, Any]:
    """One run of `stop --json`."""
    return {
        "name": r.dag_name,
        "dagRunId": r.run_id,
        "outcome": "lost" if outcome == "lost" else "stopping",
    }
