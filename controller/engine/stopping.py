"""Stopping a run's processes: signalling a step's process groups, killing the processes that
left their step's group (escapees, found by the run's environment markers), the final sweep
when the run ends, and the run-log lines that say what was killed.

Called by the runner (`controller.engine.runner`): on a stop, a step timeout and its
escalation, and in `Runner.execute`'s cleanup. No process outlives its run (DESIGN §3.3).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable

from controller import process as proc
from controller.engine.graph import Node
from controller.engine.pump import close_logs
from controller.runevents import RunEvents


class Stopper:
    """Signals and kills the processes of one run."""

    def __init__(self, *, dag_name: str, run_id: str, events: RunEvents) -> None:
        self._dag_name = dag_name
        self._run_id = run_id
        self._events = events

    def signal_node(self, node: Node, sig: int) -> None:
        """Send `sig` to each process group of the node; a SIGKILL also kills the escapees."""
        name = signal.Signals(sig).name
        for p in node.procs:
            if proc.kill_group(p.popen.pid, sig):
                self._events.note(
                    "INFO", "signal sent to step", step=node.name, signal=name, pgid=p.popen.pid
                )
        if sig == signal.SIGKILL:
            escapees = self._kill_escapees()
            if escapees:
                self._events.note(
                    "WARNING",
                    "SIGKILL sent to processes that left their step's group",
                    pids=escapees,
                )

    def kill_leftovers(self, nodes: Iterable[Node], *, subreaper: bool) -> None:
        """Nothing of this run may outlive it: kill what is left (normally nothing) and close
        the nodes' logs."""
        nodes = list(nodes)
        for g in [p.popen.pid for n in nodes for p in n.procs]:
            proc.kill_group(g, signal.SIGKILL)
        for n in nodes:
            for p in n.procs:
                try:
                    p.popen.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            close_logs(n)
        # Always, not only after a stop: no process outlives its run (DESIGN §3.3), and a
        # setsid escapee of a succeeded step would otherwise run on unsupervised (issue 8 #6).
        # As a subreaper we adopted every orphaned descendant: with no child left there is
        # none, and the scan of every process's environment is skipped (fifty runners ending
        # at one minute boundary each paid for it while the others were starting).
        if not subreaper or proc.reap_adopted():
            self._kill_escapees()

    def _kill_escapees(self) -> list[int]:
        escapees = proc.find_escapees(self._dag_name, self._run_id)
        for pid in escapees:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return escapees
