"""The step graph of one run: its nodes (steps and handlers), their runtime state, and their
rows in the store.

Owns `Node` (a step's or handler's state while the run goes on), `Proc` (one process of a
node's execution), building the nodes of a fresh run (`make_nodes`), the steps a retry runs
again (`rerun_names`), and the step rows (`step_rows`, `initial_step_rows`) in Dagu's shapes.
No I/O.

Called by the runner (`controller.engine.runner`), the output pump, the sub-DAG calls, and by
`controller.commands.start` (the rows a queued run's claim writes).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from model.specbase import HANDLER_STEP_NAMES
from model.status import StepStatus

# the statuses of a previous attempt a retry keeps (the step is not run again)
_KEPT_ON_RETRY = (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.PARTIALLY_SUCCEEDED)


@dataclass
class Proc:
    """One process of a node's execution and the pipes the runner pumps."""

    popen: subprocess.Popen[bytes]
    pidfd: int
    capture: IO[bytes] | None = None  # stdout pipe we pump (log, `output:`, sub-DAG JSON)
    errpipe: IO[bytes] | None = None  # stderr pipe we pump into the .err log
    item: Any = None  # parallel item
    sub_run_id: str = ""
    sub_params: str = ""
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Node:
    """Runtime state of one step or handler."""

    step: Any  # model.spec.StepSpec
    kind: str
    position: int
    row: int = 0
    status: StepStatus = StepStatus.NOT_STARTED
    exit_code: int | None = None
    retry_count: int = 0
    # retryPolicy limit and interval, settled when the step starts (they may be text)
    retry_limit: int = 0
    retry_interval_sec: int = 0
    done_count: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    retried_at: float | None = None
    error: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    children: list[dict[str, Any]] = field(default_factory=list)
    deps: list[Node] = field(default_factory=list)
    keep: bool = False  # retry of a run: kept from the previous attempt
    # logOutput: merged (the step's own, else the DAG's): stdout and stderr go to one `.log`
    merged: bool = False
    # the dependencies' statuses when readiness last said "wait": the answer cannot change
    # until one of them does (readiness is asked for every pending step on every pass)
    waited_on: list[StepStatus] | None = None
    # running state
    procs: list[Proc] = field(default_factory=list)
    queue: list[list[str]] = field(default_factory=list)  # remaining argvs of this execution
    out_file: IO[bytes] | None = None
    err_file: IO[bytes] | None = None
    captured: bytearray = field(default_factory=bytearray)
    captured_runs: list[str] = field(default_factory=list)
    # per-step log cap (issue 8 #24), per stream "out"/"err": bytes the log file may still
    # take, bytes discarded beyond the cap since the last marker, last byte kept was b"\n"
    log_room: dict[str, int] = field(default_factory=dict)
    log_dropped: dict[str, int] = field(default_factory=dict)
    log_nl: dict[str, bool] = field(default_factory=dict)
    log_error: str = ""  # a log write failed (e.g. ENOSPC): the execution fails with this
    # the end of this execution's stderr (masked per chunk), kept apart from the log file:
    # Dagu's error quotes the failed execution's stderr alone, while the `.err` holds every
    # attempt's and repetition's, and a merged `.log` holds stdout too
    err_tail: bytes = b""
    redirects: dict[str, IO[bytes]] = field(default_factory=dict)  # step `stdout:`/`stderr:`
    overflow: bool = False
    timeout_at: float | None = None
    timed_out: bool = False
    wait_until: float | None = None
    kill_at: float | None = None
    resend_at: float | None = None
    stop_signal: int = signal.SIGTERM
    stopping: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    script_file: str = ""
    items: list[Any] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    thread_result: list[int] = field(default_factory=list)
    repeat_n: int = 0
    repeat_wait: bool = False  # the pending wait_until is a repetition's, not a retry's
    last_exit: int = 0
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The step name."""
        return str(self.step.name)


def make_nodes(spec: Any) -> tuple[list[Node], dict[str, Node]]:
    """The steps (in order, with their dependencies) and handlers (by event) of a fresh run."""
    nodes: list[Node] = []
    by_name: dict[str, Node] = {}
    for i, step in enumerate(spec.steps):
        node = Node(step=step, kind="step", position=i, merged=step.merges_logs(spec.log_output))
        nodes.append(node)
        by_name[step.name] = node
        if step.id:
            by_name[step.id] = node
    for node in nodes:
        node.deps = [by_name[d] for d in node.step.depends or [] if d in by_name]
    handlers: dict[str, Node] = {}
    pos = len(nodes)
    for event, step in spec.handler_on.items():
        kind = HANDLER_STEP_NAMES[event]
        if not step.name:
            step = step.model_copy(update={"name": kind})
        merged = step.merges_logs(spec.log_output)
        handlers[event] = Node(step=step, kind=kind, position=pos, merged=merged)
        pos += 1
    return nodes, handlers


def rerun_names(
    nodes: Iterable[Node], previous: Mapping[str, Any], retry_step: str | None
) -> set[str]:
    """The steps a retry runs again: `retry_step` alone when one is named, else every step
    that did not succeed (or was not recorded) in `previous` and everything downstream."""
    if retry_step:
        return {retry_step}
    nodes = list(nodes)
    rerun: set[str] = set()
    for node in nodes:
        rec = previous.get(node.name)
        if rec is None or rec.status not in _KEPT_ON_RETRY:
            rerun.add(node.name)
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node.name not in rerun and any(d.name in rerun for d in node.deps):
                rerun.add(node.name)
                changed = True
    return rerun


def keep_previous(node: Node, rec: Any) -> None:
    """`node` as its previous attempt (`rec`, a StepRecord) left it: a retry keeps it."""
    node.keep = True
    node.status = rec.status
    node.exit_code = rec.exit_code
    node.retry_count = rec.retry_count
    node.done_count = rec.done_count
    node.started_at = rec.started_at
    node.finished_at = rec.finished_at
    node.error = rec.error
    node.stdout_path = rec.stdout
    node.stderr_path = rec.stderr
    node.outputs = dict(rec.outputs)
    node.children = list(rec.children)


def step_rows(nodes: Iterable[Node]) -> list[dict[str, Any]]:
    """The step rows (`Store.record_steps`) of `nodes` as they are now."""
    return [
        {
            "position": node.position,
            "kind": node.kind,
            "name": node.name,
            "spec": _step_json(node.step),
            "status": node.status,
            "exit_code": node.exit_code,
            "retry_count": node.retry_count,
            "done_count": node.done_count,
            "started_at": node.started_at,
            "finished_at": node.finished_at,
            "stdout": node.stdout_path,
            "stderr": node.stderr_path,
            "error": node.error,
            "outputs": node.outputs,
            "children": node.children,
            "pgid": None,
        }
        for node in nodes
    ]


def initial_step_rows(dag: Any) -> list[dict[str, Any]]:
    """The step rows a fresh run of `dag` starts with, in the order `Runner` assigns them
    (a queued run's claim writes them: `RunnerOptions.step_ids`)."""
    nodes, handlers = make_nodes(dag.spec)
    return step_rows([*nodes, *handlers.values()])


def _step_json(step: Any) -> dict[str, Any]:
    """Dagu's node.step: the step as run (name, id, commands, ...)."""
    d: dict[str, Any] = {"name": step.name}
    if step.id:
        d["id"] = step.id
    if step.description:
        d["description"] = step.description
    if step.command:
        cmds = []
        for c in step.command:
            try:
                parts = shlex.split(c)
            except ValueError:
                parts = [c]
            cmds.append({"command": parts[0] if parts else "", "args": parts[1:]})
        d["commands"] = cmds
        d["command"] = step.command[0] if len(step.command) == 1 else step.command
    if step.script is not None:
        d["script"] = step.script
    if step.depends:
        d["depends"] = list(step.depends)
    if step.output is not None:
        d["output"] = step.output.name
        d["outputSpec"] = {"key": step.output.key, "omit": step.output.omit}
    if step.call is not None:
        d["call"] = step.call
    if step.log_output is not None:
        d["logOutput"] = step.log_output  # only when the step sets it, as Dagu records it
    cont = step.continue_on
    if cont.failure or cont.exit_code or cont.output or cont.mark_success:
        # which failures the run tolerates; a caller reads it (`subdag._child_outputs`)
        d["continueOn"] = {
            "failure": cont.failure,
            "exitCode": list(cont.exit_code),
            "output": list(cont.output),
            "markSuccess": cont.mark_success,
        }
    return d
