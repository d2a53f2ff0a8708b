"""`dagloop stop NAME [--run-id ID]`: stop running runs of a DAG from any terminal.

Records `stop_requested_at` and sends SIGTERM to the recorded runner (after checking it is
that very process); a run whose runner is gone is reaped as lost instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from controller.engine import launch


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `stop`."""
    launch.add_common(parser)
    parser.add_argument("dag", help="DAG name")
    parser.add_argument("-r", "--run-id", help="run id (default: every running run of the DAG)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the end")


def run(args: argparse.Namespace) -> int:
    """Stop; returns the exit code."""
    from controller.liveness import on_this_host, reap_lost_run, runner_alive
    from controller.store.records import NotFound
    from controller.store.store import open_store
    from model.status import RunStatus

    settings = launch.settings_from(args)
    if not settings.database_url and not settings.db_path.exists():
        print(f"dagloop stop: no running run of {args.dag!r}", file=sys.stderr)
        return 1
    with open_store(settings) as store:
        if args.run_id:
            try:
                runs = [store.get_run(args.dag, args.run_id)]
            except NotFound as exc:
                print(f"dagloop stop: {exc}", file=sys.stderr)
                return 1
        else:
            runs = store.list_runs(dag_name=args.dag, statuses=[RunStatus.RUNNING])
        runs = [r for r in runs if r.status == RunStatus.RUNNING]
        if not runs:
            print(f"dagloop stop: no running run of {args.dag!r}", file=sys.stderr)
            return 1
        signalled = []
        for r in runs:
            store.update_run(r.id, stop_requested_at=time.time())
            if not on_this_host(r) and runner_alive(
                r, heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds
            ):
                # Another host's runner: its worker sees the request and signals it there.
                signalled.append(r)
                if not args.quiet:
                    print(f"stopping {r.dag_name} {r.run_id} (on {r.host})")
                continue
            if r.pid is not None and runner_alive(
                r, heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds
            ):
                try:
                    os.kill(r.pid, signal.SIGTERM)
                    signalled.append(r)
                    if not args.quiet:
                        print(f"stopping {r.dag_name} {r.run_id}")
                    continue
                except ProcessLookupError:
                    pass
            reap_lost_run(store, r, "runner process is gone")
            if not args.quiet:
                print(f"{r.dag_name} {r.run_id}: runner gone, recorded as lost")
        deadline = time.monotonic() + args.wait
        while signalled and time.monotonic() < deadline:
            signalled = [r for r in signalled if store.get_run_by_id(r.id).status.is_active()]
            time.sleep(0.05)
    return 0
