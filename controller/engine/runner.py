"""The runner: executes one DAG run in this process, as `dagu start` does.

Reference: dagu-1.30.md §1, §4, §7.10-11, §8.

Owns the step graph executor: readiness and dependency outcomes, `maxActiveSteps`, shell
command building, output capture, preconditions, `continueOn`, retry and repeat policies,
step and DAG timeouts, handlers, `call:` sub-DAGs and `parallel`, the run status derivation,
stop handling (signals) and the heartbeat. Every transition is one store commit.

Design: one thread, one selector. Each running process contributes a pidfd (readable when it
exits) and its stdout and stderr pipes, which the loop pumps into the step's log files up to
`settings.max_step_log_bytes` (and stdout into `output:` capture); timers (timeouts,
retry/repeat waits, stop escalation) are the select timeout. No thread per step. Executors
that are Python code (`http`, `mail`) run in a worker thread and wake the loop through a pipe.

Called by `controller.commands.start` / `retry` (and, through them, by the control loop).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import select
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controller import process as proc
from controller.diskfull import ENOSPC_TEXT, describe_os_error, is_full
from controller.engine import expand as ex
from controller.store.records import RunRecord
from controller.store.store import Store
from model.status import RunStatus, StepStatus

__all__ = [
    "EXECUTORS",
    "ExecRequest",
    "Runner",
    "RunnerOptions",
    "derive_run_status",
    "safe_name",
    "sub_run_id",
]

HANDLER_KINDS = {
    "init": "onInit",
    "success": "onSuccess",
    "failure": "onFailure",
    "abort": "onCancel",
    "exit": "onExit",
    "wait": "onWait",
}
_RESEND_SECONDS = 2.0
STEP_WRITE_DELAY_SECONDS = 0.1  # a step change is written at most this late (`Runner._flush`)
_PIPE_LINGER_SECONDS = 0.2  # see Runner._drain_after_exit
# One read per wake-up moves up to this much from a step's pipe into its log; a pipe found
# full (a chatty step) is grown to it, so a 50 MB step costs ~50 wake-ups, not 800.
_PUMP_BYTES = 1 << 20
_PIPE_BYTES = 1 << 16  # Linux's default pipe capacity
_MARKER_ROOM = 4096  # bytes of truncation markers a capped log may take beyond the cap
_TAIL_BYTES = 1024
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def safe_name(name: str) -> str:
    """A step name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def sub_run_id(parent_run_id: str, step: str, params: str) -> str:
    """Deterministic sub-run id (Dagu: base58(sha256("<parent>:<step>:<params>")))."""
    digest = hashlib.sha256(f"{parent_run_id}:{step}:{params}".encode()).digest()
    n = int.from_bytes(digest, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return out


# --------------------------------------------------------------------------- executors


@dataclass
class ExecRequest:
    """What a Python executor (http, mail) gets: the step, its env and its log files."""

    step: Any  # model.spec.StepSpec
    env: dict[str, str]
    cwd: str
    stdout: IO[bytes]
    stderr: IO[bytes]
    timeout_seconds: float | None
    dag: Any  # model.loader.Dag
    expand: Callable[[str], str]


class _CaptureWriter:
    """stdout of a Python executor: the step's log file, and `output:` capture as for a
    process (up to maxOutputSize, then nothing is published)."""

    def __init__(self, node: Node, log: IO[bytes], limit: int) -> None:
        self._node, self._log, self._limit = node, log, limit

    def write(self, data: bytes) -> int:
        node = self._node
        if node.step.output is not None and not node.overflow:
            if len(node.captured) + len(data) > self._limit:
                node.overflow = True
                node.captured = bytearray()
            else:
                node.captured += data
        return self._log.write(data)

    def flush(self) -> None:
        self._log.flush()


def _http(req: ExecRequest) -> int:
    from controller.engine.executors.http import run_http_step

    ex_spec = req.step.executor
    return run_http_step(
        command=list(req.step.command),
        config=dict(ex_spec.config) if ex_spec is not None else {},
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        timeout_seconds=req.timeout_seconds,
    )


def _mail(req: ExecRequest) -> int:
    from controller.engine.executors.mail import run_mail_step

    ex_spec = req.step.executor
    return run_mail_step(
        config=dict(ex_spec.config) if ex_spec is not None else {},
        smtp=req.dag.spec.smtp,
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        working_dir=Path(req.cwd),
    )


def _jq(req: ExecRequest) -> int:
    from controller.engine.executors.jq import run_jq_step

    ex_spec = req.step.executor
    return run_jq_step(
        command=list(req.step.command),
        script=req.step.script,
        config=dict(ex_spec.config) if ex_spec is not None else {},
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        timeout_seconds=req.timeout_seconds,
    )


# executor type -> callable(ExecRequest) -> exit code; run in a worker thread.
EXECUTORS: dict[str, Callable[[ExecRequest], int]] = {"http": _http, "mail": _mail, "jq": _jq}
_SHELL_TYPES = frozenset({"", "command", "shell"})
_DAG_TYPES = frozenset({"dag", "subworkflow", "parallel"})


# --------------------------------------------------------------------------- state


@dataclass
class _Proc:
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
    # running state
    procs: list[_Proc] = field(default_factory=list)
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

    @property
    def running(self) -> bool:
        """The step has an execution in flight or scheduled (retry/repeat wait)."""
        return self.status == StepStatus.RUNNING


def continue_on_failure(node: Node) -> bool:
    """Whether downstream may run although `node` failed (continueOn failure/exitCode/output)."""
    co = node.step.continue_on
    if co.failure:
        return True
    if co.exit_code and node.exit_code in co.exit_code:
        return True
    if co.output and node.stdout_path:
        return _log_matches(node.stdout_path, co.output)
    return False


def _log_matches(path: str, patterns: Sequence[str]) -> bool:
    try:
        with open(path, "rb") as f:
            text = f.read(16 * 1024 * 1024).decode("utf-8", "replace")
    except OSError:
        return False
    lines = text.splitlines()
    for pattern in patterns:
        if pattern.startswith("re:") or pattern.startswith("regexp:"):
            rx = re.compile(pattern.split(":", 1)[1])
            if any(rx.search(line) for line in lines):
                return True
        elif any(pattern in line for line in lines):
            return True
    return False


def derive_run_status(nodes: Sequence[Node], *, canceled: bool, last_error: bool) -> RunStatus:
    """Dagu's run status (reference §4.1) from the main steps' final states."""
    statuses = [n.status for n in nodes]
    if canceled and not all(s in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for s in statuses):
        return RunStatus.ABORTED
    if any(s == StepStatus.RUNNING for s in statuses):
        return RunStatus.RUNNING
    succeeded = any(s.is_success() for s in statuses)
    tolerated = [n for n in nodes if n.status == StepStatus.FAILED and continue_on_failure(n)]
    hard = [n for n in nodes if n.status == StepStatus.FAILED and not continue_on_failure(n)]
    if succeeded and tolerated and not hard:
        return RunStatus.PARTIALLY_SUCCEEDED
    if last_error:
        return RunStatus.FAILED
    return RunStatus.SUCCEEDED


def make_nodes(spec: Any) -> tuple[list[Node], dict[str, Node]]:
    """The steps (in order, with their dependencies) and handlers (by event) of a fresh run."""
    nodes: list[Node] = []
    by_name: dict[str, Node] = {}
    for i, step in enumerate(spec.steps):
        node = Node(step=step, kind="step", position=i)
        nodes.append(node)
        by_name[step.name] = node
        if step.id:
            by_name[step.id] = node
    for node in nodes:
        node.deps = [by_name[d] for d in node.step.depends or [] if d in by_name]
    handlers: dict[str, Node] = {}
    pos = len(nodes)
    for event, step in spec.handler_on.items():
        kind = HANDLER_KINDS[event]
        if not step.name:
            step = step.model_copy(update={"name": kind})
        handlers[event] = Node(step=step, kind=kind, position=pos)
        pos += 1
    return nodes, handlers


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


# --------------------------------------------------------------------------- options


@dataclass
class RunnerOptions:
    """Everything a run needs; built by the start/retry commands."""

    dag: Any  # model.loader.Dag
    settings: Any  # model.config.Settings
    store: Store
    run: RunRecord
    params: list[tuple[str, str]]
    log_dir: Path
    previous: Mapping[str, Any] | None = None  # retry: name -> StepRecord of the last attempt
    retry_step: str | None = None
    progress: Callable[[Node], None] | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    step_ids: Sequence[int] | None = None  # rows of `initial_step_rows`, written with the claim


class Runner:
    """Executes one run; `execute()` returns the final RunStatus."""

    def __init__(self, opts: RunnerOptions) -> None:
        self.o = opts
        self.dag = opts.dag
        self.spec = opts.dag.spec
        self.store = opts.store
        self.run = opts.run
        self.sel = selectors.DefaultSelector()
        self.canceled = False
        self.stop_reason = ""
        self.last_error = ""
        self.deadline_hit = False
        self.handler_status: RunStatus | None = None
        self.subreaper = False  # orphaned descendants become our children (`execute`)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self.workdir = self._dag_workdir()
        self.base_env: dict[str, str] = {}
        self.dag_vars: dict[str, str] = {}  # DAG env + dotenv + params (for expansion)
        self.outputs: dict[str, str] = {}
        self.dotenv_values: dict[str, str] = {}  # for masking secrets in alerts
        self.step_refs: dict[str, dict[str, str]] = {}
        self.nodes: list[Node] = []
        self.handlers: dict[str, Node] = {}
        self._active = 0
        self._dag_deadline: float | None = None
        self._unsaved: dict[int, dict[str, Any]] = {}  # step row -> changes not yet written
        self._flush_at: float | None = None  # monotonic deadline of the oldest of them

    # ------------------------------------------------------------------ setup

    def _dag_workdir(self) -> Path:
        wd = self.spec.working_dir
        base = self.dag.location.parent if self.dag.location is not None else Path.cwd()
        if wd:
            p = Path(os.path.expandvars(os.path.expanduser(wd)))
            return p if p.is_absolute() else base / p
        if self.o.settings.work_dir is not None:
            return Path(self.o.settings.work_dir)
        return base

    def _build_env(self) -> None:
        """Base env of every step: filtered OS env, DAGU_HOME, DAG env, dotenv, params."""
        environ = self.o.environ
        env = ex.filtered_os_env(environ, secret_patterns=tuple(self.o.settings.secret_patterns))
        env["DAGU_HOME"] = str(self.o.settings.home)
        params = list(self.o.params)
        raw_params = {k: v for k, v in params}
        dag_vars: dict[str, str] = {}
        for key, value in self.spec.env:
            scope = {**raw_params, **dag_vars}
            v = ex.expand(value, scope, fallback=environ, keep_unknown=False)
            v = ex.eval_backticks(v, env={**env, **dag_vars}, cwd=str(self.workdir), strict=True)
            dag_vars[key] = v
            env[key] = v
        dotenv = self.spec.dotenv
        files = [".env"] if dotenv is None else list(dotenv)
        from model.config import parse_env_file

        self.dotenv_values = {}
        for name in files:
            path = Path(os.path.expanduser(ex.expand(name, dag_vars, fallback=environ)))
            if not path.is_absolute():
                path = self.workdir / path
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            try:
                values = parse_env_file(text)
            except ValueError:
                continue
            for k, v in values.items():
                dag_vars[k] = v
                env[k] = v
                self.dotenv_values[k] = v
        named: dict[str, str] = {}
        for key, value in params:
            v = ex.expand(value, dag_vars, fallback=environ)
            v = ex.eval_backticks(v, env=env, cwd=str(self.workdir), strict=True)
            named[key] = v
            dag_vars[key] = v
            env[key] = v
        env["DAGU_PARAMS_JSON"] = json.dumps(named, ensure_ascii=False)
        self.params_resolved = named
        self.base_env = env
        self.dag_vars = dag_vars

    def expand_text(self, text: str) -> str:
        """`${VAR}` expansion with the run's variables (DAG env, dotenv, params, outputs)."""
        return ex.expand(text, {**self.dag_vars, **self.outputs}, fallback=self.o.environ)

    def _make_nodes(self) -> None:
        self.nodes, self.handlers = make_nodes(self.spec)
        if self.o.previous:
            self._apply_retry_plan(self.o.previous)

    def _apply_retry_plan(self, prev: Mapping[str, Any]) -> None:
        """Keep succeeded steps of the previous attempt; re-run the rest and their downstream."""
        rerun: set[str] = set()
        if self.o.retry_step:
            rerun.add(self.o.retry_step)
        else:
            for node in self.nodes:
                rec = prev.get(node.name)
                if rec is None or rec.status not in (
                    StepStatus.SUCCEEDED,
                    StepStatus.SKIPPED,
                    StepStatus.PARTIALLY_SUCCEEDED,
                ):
                    rerun.add(node.name)
            changed = True
            while changed:
                changed = False
                for node in self.nodes:
                    if node.name not in rerun and any(d.name in rerun for d in node.deps):
                        rerun.add(node.name)
                        changed = True
        for node in self.nodes:
            rec = prev.get(node.name)
            if node.name in rerun or rec is None:
                continue
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
            self._publish(node)

    def _record_nodes(self) -> None:
        nodes = [*self.nodes, *self.handlers.values()]
        ids = self.o.step_ids
        if ids is None or self.o.previous:
            ids = self.store.record_steps(self.run.id, step_rows(nodes))
        for node, row in zip(nodes, ids, strict=True):
            node.row = row

    def _save(self, node: Node, **extra: Any) -> None:
        """Record the node's state: buffered, written with the next step changes within
        `STEP_WRITE_DELAY_SECONDS` (`_flush`), or with the run's final status."""
        self._buffer(
            node.row,
            status=node.status,
            exit_code=node.exit_code,
            retry_count=node.retry_count,
            done_count=node.done_count,
            started_at=node.started_at,
            finished_at=node.finished_at,
            retried_at=node.retried_at,
            stdout=node.stdout_path,
            stderr=node.stderr_path,
            error=node.error,
            outputs=node.outputs,
            children=node.children,
            **extra,
        )
        if self.o.progress is not None:
            self.o.progress(node)

    def _buffer(self, row: int, **fields: Any) -> None:
        self._unsaved.setdefault(row, {}).update(fields)
        if self._flush_at is None:
            self._flush_at = time.monotonic() + STEP_WRITE_DELAY_SECONDS

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except Exception:  # already failing: the original error is the one to report
            pass

    def _flush(self, **run_fields: Any) -> None:
        """Write the buffered step changes, and `run_fields` of the run, in one commit.

        Each write takes the database's one write lock: fifty runners starting at a minute
        boundary each wrote a step's start, its end and the run's end apart, and mostly
        waited for the lock. A step of a few milliseconds now costs one write with the
        run's end; a longer one shows as running within the delay."""
        steps, self._unsaved, self._flush_at = self._unsaved, {}, None
        self.store.update_steps(
            steps, run=self.run.id if run_fields else None, run_fields=run_fields
        )

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.canceled:
            self.canceled = True
            self.stop_reason = signal.Signals(signum).name
        try:
            os.write(self._wake_w, b"s")
        except OSError:
            pass

    # ------------------------------------------------------------------ main

    def execute(self) -> RunStatus:
        """Run the DAG to its end; record and return the final status."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.subreaper = proc.become_subreaper()
        try:
            return self._execute()
        except BaseException:
            self._flush_quietly()  # what the steps did is kept even when the run breaks
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._cleanup_all()

    def _execute(self) -> RunStatus:
        self.o.log_dir.mkdir(parents=True, exist_ok=True)
        proc.make_fds_cloexec()
        self._make_nodes()
        self._precreate_logs()
        self._record_nodes()
        try:
            self._build_env()
        except Exception as exc:  # a bad env entry: the run fails before any step
            return self._finish(RunStatus.FAILED, f"cannot build the environment: {exc}")
        if self.spec.timeout_sec:
            self._dag_deadline = time.monotonic() + self.spec.timeout_sec
        # DAG-level preconditions: not met -> aborted, steps not started; the abort and exit
        # handlers still run, the init handler does not (Dagu, precondition_dag). A DAG without
        # steps succeeds whatever its preconditions say (Dagu, no_steps_handlers).
        for cond in self.spec.preconditions if self.nodes else ():
            ok, why = self._check_condition(cond, self.base_env, str(self.workdir))
            if not ok:
                self.last_error = f"precondition not met: {why}"
                status = self._run_end_handlers(RunStatus.ABORTED)
                return self._finish(status, self.last_error)
        init_ok = True
        if "init" in self.handlers and self.nodes:  # no init handler without steps (Dagu)
            init_ok = self._run_handler("init", None)
        if not init_ok:
            # Dagu: a failed init handler aborts the run (exit 1), steps stay not_started and
            # the abort and exit handlers run (handlers_init_fail).
            status = RunStatus.ABORTED
        else:
            if not self.canceled:
                self._loop(self.nodes)
            # Steps that never started after a stop stay not_started (Dagu, handlers_abort).
            status = derive_run_status(
                self.nodes, canceled=self.canceled, last_error=bool(self.last_error)
            )
            if self.deadline_hit:
                status = RunStatus.FAILED
                self.canceled = False
                # Dagu marks the steps the DAG deadline kept from starting aborted (dag_timeout)
                for node in self.nodes:
                    if node.status == StepStatus.NOT_STARTED and not node.keep:
                        self._settle(node, StepStatus.ABORTED, "")
                # The handlers run without the expired deadline: Dagu starts them under it and
                # they fail at once (docs/compatibility.md "Handlers after a DAG timeout").
                self.deadline_hit = False
                self._dag_deadline = None
        status = self._run_end_handlers(status)
        return self._finish(status, self.last_error)

    def _run_end_handlers(self, status: RunStatus) -> RunStatus:
        """success/failure/abort handler by `status`, then exit; returns the final status."""
        if status.is_success() and "success" in self.handlers:
            if not self._run_handler("success", status):
                status = RunStatus.FAILED
        elif status == RunStatus.FAILED and "failure" in self.handlers:
            self._run_handler("failure", status)
        elif status == RunStatus.ABORTED and "abort" in self.handlers:
            was = self.canceled
            self.canceled = False  # let the handler run
            self._run_handler("abort", status)
            self.canceled = was
        if "exit" in self.handlers:
            was = self.canceled
            self.canceled = False
            if not self._run_handler("exit", status) and status.is_success():
                status = RunStatus.FAILED
            self.canceled = was
        return status

    def _finish(self, status: RunStatus, error: str) -> RunStatus:
        self._flush(
            status=status,
            finished_at=time.time(),
            error=error if status not in (RunStatus.SUCCEEDED,) else "",
        )
        return status

    def _run_handler(self, event: str, status: RunStatus | None) -> bool:
        node = self.handlers[event]
        node.env_extra = {"DAG_RUN_STATUS": status.label if status is not None else "running"}
        saved_error = self.last_error
        self._loop([node])
        if node.status != StepStatus.SUCCEEDED:
            return False
        self.last_error = saved_error
        return True

    # ------------------------------------------------------------------ loop

    def _loop(self, nodes: list[Node]) -> None:
        limit = self.spec.max_active_steps or 0
        pending = [n for n in nodes if not n.keep and n.status == StepStatus.NOT_STARTED]
        while True:
            if not self.canceled and not self.deadline_hit:
                still: list[Node] = []
                for node in pending:
                    verdict = self._readiness(node)
                    if verdict is None:
                        still.append(node)
                        continue
                    if verdict == "run":
                        if limit and self._active >= limit:
                            still.append(node)
                            continue
                        self._start_node(node)
                pending = still
            running = [n for n in nodes if n.status == StepStatus.RUNNING]
            if not running:
                if self.canceled or self.deadline_hit or not pending:
                    return
                if all(self._readiness(n) is None for n in pending) and not any(
                    n.status == StepStatus.RUNNING for n in self.nodes
                ):
                    return  # nothing can make progress (should not happen after validation)
                continue
            self._wait(running)

    def _readiness(self, node: Node) -> str | None:
        """None = wait; 'run' = start; 'done' = decided without running (skipped/aborted)."""
        for dep in node.deps:
            st = dep.status
            if st in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
                continue
            if st == StepStatus.FAILED:
                if continue_on_failure(dep):
                    continue
                self._settle(node, StepStatus.ABORTED, "upstream failed")
                return "done"
            if st == StepStatus.SKIPPED:
                if dep.step.continue_on.skipped:
                    continue
                self._settle(node, StepStatus.SKIPPED, "upstream skipped")
                return "done"
            if st == StepStatus.ABORTED:
                self._settle(node, StepStatus.ABORTED, "")  # Dagu: no error text here
                return "done"
            return None
        return "run"

    def _settle(self, node: Node, status: StepStatus, error: str) -> None:
        node.status = status
        node.error = error
        self._save(node)

    # ------------------------------------------------------------------ starting

    def _node_env(self, node: Node) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(self.outputs)
        scope = {**self.dag_vars, **self.outputs}
        for key, value in node.step.env:
            v = ex.expand(value, scope, step_refs=self.step_refs, fallback=self.o.environ)
            v = ex.eval_backticks(v, env=env, cwd=str(self.workdir))
            scope[key] = v
            env[key] = v
        env["DAG_NAME"] = self.dag.name
        env["DAG_RUN_ID"] = self.run.run_id
        env["DAG_RUN_LOG_FILE"] = self.run.log_file
        env["DAG_RUN_STEP_NAME"] = node.name
        env["DAG_RUN_STEP_STDOUT_FILE"] = node.stdout_path
        env["DAG_RUN_STEP_STDERR_FILE"] = node.stderr_path
        env.update(node.env_extra)
        return env

    def _scope(self, node: Node) -> dict[str, str]:
        scope = {**self.dag_vars, **self.outputs}
        for key, _ in node.step.env:
            if key in node.env:
                scope[key] = node.env[key]
        return scope

    def _step_cwd(self, node: Node) -> str:
        wd = node.step.working_dir
        if not wd:
            return str(self.workdir)
        wd = ex.expand(os.path.expanduser(wd), self._scope(node), fallback=self.o.environ)
        p = Path(wd)
        return str(p if p.is_absolute() else self.workdir / p)

    def _start_node(self, node: Node) -> None:
        node.stdout_path, node.stderr_path = self._log_paths(node)
        node.status = StepStatus.RUNNING
        node.started_at = time.time()
        node.finished_at = None
        node.error = ""
        node.exit_code = None
        node.captured_runs = []
        node.env = self._node_env(node)
        node.cwd = self._step_cwd(node)
        node.env["PWD"] = node.cwd
        self._active += 1
        # Preconditions: not met -> skipped (not an error).
        for cond in node.step.preconditions:
            ok, _why = self._check_condition(cond, node.env, node.cwd, node)
            if not ok:
                self._active -= 1
                node.finished_at = time.time()
                node.status = StepStatus.SKIPPED
                node.error = ""
                self._save(node)
                return
        unsupported = self._unsupported(node)
        if unsupported:
            self._active -= 1
            self._fail_now(node, unsupported)
            return
        if node.step.timeout_sec:
            node.timeout_at = time.monotonic() + node.step.timeout_sec
        else:
            node.timeout_at = None
        node.timed_out = False
        self._begin_execution(node)
        if node.status == StepStatus.RUNNING:
            pg = node.procs[0].popen.pid if node.procs else None
            self._save(node, pgid=pg)

    def _unsupported(self, node: Node) -> str:
        et = node.step.executor_type
        if node.step.parallel is not None or node.step.call is not None:
            return ""
        if et in _SHELL_TYPES or et in EXECUTORS or et in _DAG_TYPES:
            if node.step.container is not None:
                return "executor type 'docker' is not supported by this engine"
            if node.step.shell and node.step.shell[0].endswith("nix-shell"):
                return "shell 'nix-shell' is not supported by this engine"
            return ""
        return f"executor type {et!r} is not supported by this engine"

    def _fail_now(self, node: Node, error: str) -> None:
        node.status = StepStatus.FAILED
        node.error = error
        node.finished_at = time.time()
        self.last_error = error
        self._save(node)

    def _open_logs(self, node: Node) -> None:
        cap = self.o.settings.max_step_log_bytes
        if node.out_file is None:
            node.out_file = open(node.stdout_path, "ab", buffering=0)
            node.log_room["out"] = cap - os.fstat(node.out_file.fileno()).st_size
        if node.err_file is None:
            node.err_file = open(node.stderr_path, "ab", buffering=0)
            node.log_room["err"] = cap - os.fstat(node.err_file.fileno()).st_size
        for stream in ("out", "err"):
            node.log_dropped[stream] = 0
            # a log already at its cap ends with the previous execution's marker line
            node.log_nl.setdefault(stream, True)

    def _log_paths(self, node: Node) -> tuple[str, str]:
        base = safe_name(node.name) if node.kind == "step" else node.kind
        return str(self.o.log_dir / f"{base}.out"), str(self.o.log_dir / f"{base}.err")

    def _precreate_logs(self) -> None:
        """Create the steps' log files from a helper thread while the first steps run.

        Creating a file costs ~0.5 ms here, twice per step: off the chain's critical path,
        opening an existing file costs microseconds. O_CREAT|O_APPEND makes the race benign.
        """
        paths = [p for n in self.nodes if not n.keep for p in self._log_paths(n)]

        def work() -> None:
            for path in paths:
                try:
                    os.close(
                        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                    )
                except OSError:
                    return

        if len(paths) > 4:
            threading.Thread(target=work, daemon=True, name="logs").start()

    def _close_logs(self, node: Node) -> None:
        for f in (node.out_file, node.err_file, *node.redirects.values()):
            if f is not None:
                f.close()
        node.out_file = node.err_file = None
        node.redirects = {}

    def _open_redirects(self, node: Node) -> str:
        """Open the step's `stdout:`/`stderr:` files (append; a relative path is relative to
        the DAG's working directory, not the step's); the error text when one cannot be."""
        for stream, target in (("out", node.step.stdout), ("err", node.step.stderr)):
            if not target or stream in node.redirects:
                continue
            path = Path(ex.expand(target, self._scope(node), fallback=self.o.environ))
            if not path.is_absolute():
                path = self.workdir / path
            try:
                node.redirects[stream] = open(path, "ab", buffering=0)
            except OSError as exc:
                which = "stdout" if stream == "out" else "stderr"
                return f"failed to setup {which} file: {describe_os_error(exc)}"
        return ""

    def _begin_execution(self, node: Node) -> None:
        """Start one execution (attempt / repetition) of a running node."""
        node.captured = bytearray()
        node.overflow = False
        node.wait_until = None
        node.log_error = ""
        try:
            self._open_logs(node)
        except OSError as exc:  # e.g. a full log disk (issue 8 #22): the step fails, not us
            self._end_execution(node, 1, f"cannot open the step log {describe_os_error(exc)}")
            return
        # Dagu tees stdout/stderr into these files too; one that cannot be opened (missing
        # directory) fails the step before it runs (Dagu 1.30.2, step_stdout_redirect).
        if (node.step.stdout or node.step.stderr) and (problem := self._open_redirects(node)):
            self._end_execution(node, 1, problem)
            return
        step = node.step
        if step.call is not None:
            self._start_calls(node)
            return
        et = step.executor_type
        if et in EXECUTORS:
            self._start_thread(node, EXECUTORS[et])
            return
        try:
            node.queue = self._argvs(node)
        except ValueError as exc:
            self._end_execution(node, 1, f"cannot build the command: {exc}")
            return
        self._spawn_next(node)

    def _argvs(self, node: Node) -> list[list[str]]:
        step = node.step
        scope = self._scope(node)

        def ev(text: str) -> str:
            return ex.expand(text, scope, step_refs=self.step_refs, quote_json=True)

        # Shell command and script text get Dagu's text rules (ex.expand `shell_text`): the
        # DAG env and dotenv reach the shell through its environment, not through the text.
        overridden = {*self.params_resolved, *self.outputs, *(k for k, _ in step.env)}
        env_only = {k for k, _ in self.spec.env} | set(self.dotenv_values)

        def ev_shell(text: str) -> str:
            return ex.expand(
                text,
                scope,
                step_refs=self.step_refs,
                quote_json=True,
                shell_text=True,
                shell_vars=env_only - overridden,
            )

        if step.shell:
            shell = list(step.shell)  # a step-level shell is taken as written (no -e)
        elif self.spec.shell:
            # Dagu 1.30.2 still adds -e to a DAG-level shell (shell_options, observed)
            shell = list(self.spec.shell)
            if shell != ["direct"] and "-e" not in shell[1:]:
                shell.append("-e")
        else:
            default = self.o.settings.default_shell or self.o.environ.get("SHELL") or "sh"
            shell = [*shlex.split(default), "-e"]
        direct = len(shell) == 1 and shell[0] == "direct"
        if step.script is not None:
            fd, path = tempfile.mkstemp(prefix="dagloop_script-", dir=str(self.o.log_dir))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                # Dagu substitutes params, step env and outputs into the script text, even
                # inside single quotes (not next to one), a whole "${VAR}" JSON-quoted as in
                # commands; the rest is left to the interpreter.
                f.write(
                    ex.expand(
                        step.script,
                        scope,
                        step_refs=self.step_refs,
                        quote_json=True,
                        shell_text=True,
                        shell_vars=env_only - overridden,
                    )
                )
            os.chmod(path, 0o700)
            node.script_file = path
            if step.command:
                return [[*shlex.split(ev(step.command[0])), path]]
            if direct:
                return [[path]]
            return [[*shell, path]]
        out = []
        for cmd in step.command:
            if direct:
                out.append(shlex.split(ev(cmd)))
            else:
                out.append([*shell, "-c", ev_shell(cmd)])
        return out

    def _spawn_next(self, node: Node) -> None:
        argv = node.queue.pop(0)
        assert node.out_file is not None and node.err_file is not None
        try:
            # Both streams through pipes the loop pumps into the log files, so a log stops at
            # settings.max_step_log_bytes while the step writes on (issue 8 #24; `_drain`).
            popen = proc.spawn(
                argv,
                env=node.env,
                cwd=node.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            msg = f'exec: "{exc.filename or argv[0]!s}": executable file not found in $PATH'
            if not os.path.isdir(node.cwd):
                msg = f"working directory {node.cwd!r} does not exist"
            node.err_file.write((msg + "\n").encode())
            self._end_execution(node, 127, msg)
            return
        except OSError as exc:
            node.err_file.write(f"{exc}\n".encode())
            self._end_execution(node, 126, str(exc))
            return
        self._track(node, popen, capture=popen.stdout, errpipe=popen.stderr)

    def _track(
        self, node: Node, popen: subprocess.Popen[bytes], *, capture: IO[bytes] | None, **kw: Any
    ) -> None:
        pidfd = os.pidfd_open(popen.pid)
        p = _Proc(popen=popen, pidfd=pidfd, capture=capture, **kw)
        node.procs.append(p)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", (node, p)))
        for kind, pipe in (("out", capture), ("err", p.errpipe)):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                self.sel.register(pipe, selectors.EVENT_READ, (kind, (node, p)))
        if len(node.procs) == 1 and node.kind == "step" and node.done_count + node.retry_count:
            # a retry or repeat: the group changed (the first one is saved by _start_node)
            self._buffer(node.row, pgid=popen.pid)

    def _start_thread(self, node: Node, fn: Callable[[ExecRequest], int]) -> None:
        assert node.out_file is not None and node.err_file is not None
        req = ExecRequest(
            step=node.step,
            env=node.env,
            cwd=node.cwd,
            stdout=_CaptureWriter(node, node.out_file, self.spec.max_output_size),  # type: ignore[arg-type]
            stderr=node.err_file,
            timeout_seconds=float(node.step.timeout_sec) or None,
            dag=self.dag,
            expand=lambda text: ex.expand(
                text, {**self._scope(node), **node.env}, step_refs=self.step_refs
            ),
        )
        node.thread_result = []

        def work() -> None:
            try:
                code = fn(req)
            except Exception as exc:  # an executor bug or a bad config fails the step
                try:
                    req.stderr.write(f"{type(exc).__name__}: {exc}\n".encode())
                except (OSError, ValueError):
                    pass
                code = 1
            node.thread_result.append(code)
            try:
                os.write(self._wake_w, b"t")
            except OSError:
                pass

        threading.Thread(target=work, daemon=True, name=f"step-{node.name}").start()

    # ------------------------------------------------------------------ sub-DAGs

    def _start_calls(self, node: Node) -> None:
        step = node.step
        node.results = []
        node.children = []
        if step.parallel is not None:
            items = step.parallel.items
            if isinstance(items, str):
                value = ex.expand(items, self._scope(node), step_refs=self.step_refs)
                try:
                    parsed = json.loads(value)
                    items = parsed if isinstance(parsed, list) else [parsed]
                except ValueError:
                    items = value.split()
            node.items = list(items)
        else:
            node.items = [None]
        if not node.items:
            self._finish_calls(node)
            return
        self._spawn_calls(node)

    def _spawn_calls(self, node: Node) -> None:
        step = node.step
        cap = step.parallel.max_concurrent if step.parallel is not None else 1
        while node.items and len(node.procs) < cap:
            item = node.items.pop(0)
            tokens = self._call_params(node, item)
            params_text = " ".join(tokens)
            sid = sub_run_id(self.run.run_id, node.name, params_text + json.dumps(item))
            target = self._call_target(node)
            argv = [
                sys.executable,
                "-m",
                "controller",
                "start",
                "-q",
                "--json",
                "--run-id",
                sid,
                "--parent",
                f"{self.dag.name}:{self.run.run_id}",
                "--root",
                f"{self.run.root_dag or self.dag.name}:{self.run.root_run_id or self.run.run_id}",
                *target,
                "--",
                *tokens,
            ]
            env = dict(self.o.environ)
            env["DAGU_HOME"] = str(self.o.settings.home)
            assert node.err_file is not None
            popen = proc.spawn(
                argv, env=env, cwd=node.cwd, stdout=subprocess.PIPE, stderr=node.err_file
            )
            node.children.append({"dagRunId": sid, "params": params_text})
            self._track(
                node, popen, capture=popen.stdout, item=item, sub_run_id=sid, sub_params=params_text
            )
        self._save(node)

    def _call_target(self, node: Node) -> list[str]:
        call = ex.expand(str(node.step.call), self._scope(node))
        if call in self.dag.local_dags and self.dag.location is not None:
            return ["--local", call, str(self.dag.location)]
        p = Path(os.path.expanduser(call))
        if p.suffix in (".yaml", ".yml") or "/" in call:
            if not p.is_absolute():
                p = (
                    (Path(self.o.settings.dags_dir) / p)
                    if not (self.workdir / p).exists()
                    else (self.workdir / p)
                )
            return [str(p)]
        return [call]

    def _call_params(self, node: Node, item: Any) -> list[str]:
        from model.spec import parse_params

        scope = dict(self._scope(node))
        if item is not None:
            scope["ITEM"] = item if isinstance(item, str) else json.dumps(item)
        raw = node.step.params
        pairs: list[tuple[str | None, str]] = []
        if raw is not None:
            if isinstance(raw, str):
                raw = ex.expand(raw, scope, step_refs=self.step_refs, keep_unknown=True)
            pairs = parse_params(raw)
        elif item is not None:
            if isinstance(item, dict):
                pairs = [(str(k), str(v)) for k, v in item.items()]
            else:
                pairs = [(None, str(item))]
        out = []
        for key, value in pairs:
            v = ex.expand(value, scope, step_refs=self.step_refs)
            out.append(f"{key}={v}" if key is not None else v)
        return out

    def _call_result(self, p: _Proc) -> dict[str, Any]:
        text = p.data.decode("utf-8", "replace").strip()
        doc: dict[str, Any] = {}
        start = text.rfind("\n{")
        for candidate in (text, text[start + 1 :] if start >= 0 else ""):
            if not candidate:
                continue
            try:
                doc = json.loads(candidate)
                break
            except ValueError:
                continue
        return {
            "name": doc.get("name", ""),
            "dagRunId": p.sub_run_id,
            "params": p.sub_params,
            "outputs": _child_outputs(doc),
            "status": doc.get("statusLabel", "failed"),
        }

    def _finish_calls(self, node: Node) -> None:
        # item order, not completion order (Dagu); children are recorded in spawn (item) order
        order = {c["dagRunId"]: i for i, c in reversed(list(enumerate(node.children)))}
        results = sorted(node.results, key=lambda r: order.get(r["dagRunId"], len(order)))
        failed = [r for r in results if r["status"] not in ("succeeded", "partially_succeeded")]
        if node.step.parallel is not None:
            doc: Any = {
                "summary": {
                    "total": len(results),
                    "succeeded": len(results) - len(failed),
                    "failed": len(failed),
                },
                "results": results,
                # the outputs of the successful sub-runs only, in item order (Dagu)
                "outputs": [r["outputs"] for r in results if r not in failed],
            }
        else:
            doc = results[0] if results else {}
        text = json.dumps(doc, ensure_ascii=False, indent=2)
        assert node.out_file is not None
        node.out_file.write(text.encode() + b"\n")
        if node.step.output is not None:
            node.captured = bytearray(text.encode())
        code = 1 if failed else 0
        self._end_execution(node, code, "sub DAG run failed" if failed else "")

    # ------------------------------------------------------------------ waiting

    def _wait(self, running: list[Node]) -> None:
        now = time.monotonic()
        timeout: float | None = None
        for node in running:
            for t in (node.timeout_at, node.wait_until, node.kill_at, node.resend_at):
                if t is not None:
                    timeout = t - now if timeout is None else min(timeout, t - now)
        if self._dag_deadline is not None and not self.deadline_hit:
            d = self._dag_deadline - now
            timeout = d if timeout is None else min(timeout, d)
        if self._flush_at is not None:
            d = self._flush_at - now
            timeout = d if timeout is None else min(timeout, d)
        if timeout is not None:
            timeout = max(0.0, timeout)
        events = self.sel.select(timeout)
        for key, _ in events:
            kind, data = key.data
            if kind == "wake":
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                for node in running:
                    if (
                        node.thread_result
                        and node.procs == []
                        and node.status == StepStatus.RUNNING
                    ):
                        code = node.thread_result.pop()
                        self._end_execution(node, code, "" if code == 0 else f"exit status {code}")
            elif kind in ("out", "err"):
                node, p = data
                if (p.capture if kind == "out" else p.errpipe) is not None:
                    self._drain(node, p, kind)
            elif kind == "exit":
                node, p = data
                if p in node.procs:
                    self._reap(node, p)
        now = time.monotonic()
        if self._flush_at is not None and now >= self._flush_at:
            self._flush()
        if self.canceled:
            self._stop_all(running, now)
        if (
            self._dag_deadline is not None
            and not self.deadline_hit
            and now >= self._dag_deadline
            and not self.canceled
        ):
            self.deadline_hit = True
            self.last_error = "DAG run timed out (context deadline exceeded)"
            self._stop_all(running, now)
        for node in running:
            if node.status != StepStatus.RUNNING:
                continue
            if node.timeout_at is not None and now >= node.timeout_at and not node.timed_out:
                node.timed_out = True
                self._signal_node(node, node.stop_signal)
                node.kill_at = now + self.spec.max_clean_up_time_sec
            if node.kill_at is not None and now >= node.kill_at:
                self._signal_node(node, signal.SIGKILL)
                node.kill_at = None
                node.resend_at = None
            if node.resend_at is not None and now >= node.resend_at:
                self._signal_node(node, node.stop_signal)
                node.resend_at = now + _RESEND_SECONDS
            if node.wait_until is not None and now >= node.wait_until:
                if node.stopping:
                    continue
                node.wait_until = None
                self._begin_execution(node)

    def _stop_all(self, running: list[Node], now: float) -> None:
        for node in running:
            if node.status != StepStatus.RUNNING or node.stopping:
                continue
            node.stopping = True
            if node.wait_until is not None and not node.procs:
                # waiting for a retry/repeat: nothing to kill. A repeated step whose last
                # execution succeeded ends succeeded, as in Dagu; a pending retry is aborted
                # (Dagu marks it succeeded: docs/compatibility.md).
                if node.repeat_wait and node.last_exit == 0:
                    self._final(node, StepStatus.SUCCEEDED, 0, "")
                else:
                    self._final(node, StepStatus.ABORTED, node.exit_code, "")
                continue
            sig = proc.signal_by_name(node.step.signal_on_stop) if self.canceled else signal.SIGTERM
            node.stop_signal = sig
            self._signal_node(node, sig)
            node.resend_at = now + _RESEND_SECONDS
            node.kill_at = now + self.spec.max_clean_up_time_sec
            if not node.procs and node.thread_result == [] and node.step.executor_type in EXECUTORS:
                # a Python executor cannot be signalled; abandon it
                self._final(node, StepStatus.ABORTED, None, "")

    def _signal_node(self, node: Node, sig: int) -> None:
        name = signal.Signals(sig).name
        for p in node.procs:
            if proc.kill_group(p.popen.pid, sig):
                self._note(f"{name} sent to step {node.name!r} (process group {p.popen.pid})")
        if sig == signal.SIGKILL:
            escapees = proc.find_escapees(self.dag.name, self.run.run_id)
            for pid in escapees:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if escapees:
                self._note(f"SIGKILL sent to processes that left their step's group: {escapees}")

    def _note(self, text: str) -> None:
        """One line in the run log (run.log), e.g. what a stop killed; never fails the run."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            with open(self.o.log_dir / "run.log", "a", encoding="utf-8") as f:
                f.write(f"{stamp} INFO {text} dag={self.dag.name} run_id={self.run.run_id}\n")
        except OSError:
            pass

    def _drain(self, node: Node, p: _Proc, stream: str = "out") -> bool:
        """Pump what is available on a step's stdout ("out") or stderr ("err") pipe; False
        at EOF (the pipe is then closed).

        stdout also feeds `output:` capture (up to maxOutputSize) and a sub-DAG's JSON result.
        The log write is capped (`_write_log`): the step never blocks on a full pipe nor gets
        EPIPE because its log is full.
        """
        pipe = p.capture if stream == "out" else p.errpipe
        assert pipe is not None
        try:
            chunk = os.read(pipe.fileno(), _PUMP_BYTES)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self._close_pipe(node, p, stream)
            return False
        if len(chunk) == _PIPE_BYTES:
            try:  # a chatty step: fewer, larger reads (may be refused past the user's quota)
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PUMP_BYTES)
            except OSError:
                pass
        if stream == "out" and node.step.call is not None:
            p.data += chunk
            return True
        self._write_log(node, stream, chunk)
        if stream in node.redirects:
            try:
                node.redirects[stream].write(chunk)
            except OSError as exc:
                node.log_error = node.log_error or describe_os_error(exc)
        if stream == "out" and node.step.output is not None and not node.overflow:
            if len(node.captured) + len(chunk) > self.spec.max_output_size:
                node.overflow = True
                node.captured = bytearray()
            else:
                node.captured += chunk
        return True

    def _write_log(self, node: Node, stream: str, chunk: bytes) -> None:
        """Append `chunk` to the step's log up to `settings.max_step_log_bytes` (issue 8 #24);
        the rest is counted and discarded. A failed write (ENOSPC) stops the log and fails the
        execution (`log_error`) instead of the runner."""
        room = node.log_room.get(stream, 0)
        if room <= 0 or node.log_error:
            node.log_dropped[stream] = node.log_dropped.get(stream, 0) + len(chunk)
            return
        keep = memoryview(chunk)[:room]
        f = node.out_file if stream == "out" else node.err_file
        assert f is not None
        try:
            _write_all(f.fileno(), keep)
        except OSError as exc:
            node.log_error = self._log_write_error(exc, f.name)
            node.log_dropped[stream] = node.log_dropped.get(stream, 0) + len(chunk)
            return
        node.log_room[stream] = room - len(keep)
        node.log_nl[stream] = keep[-1] == ord("\n")
        if len(keep) < len(chunk):
            node.log_dropped[stream] = node.log_dropped.get(stream, 0) + len(chunk) - len(keep)

    def _log_write_error(self, exc: OSError, path: object) -> str:
        if exc.errno == errno.ENOSPC:
            return f"{ENOSPC_TEXT} on {self.o.log_dir}: the step's output was not written"
        return f"cannot write the step log {describe_os_error(exc, str(path))}"

    def _close_pipe(self, node: Node, p: _Proc, stream: str) -> None:
        """Stop pumping one pipe; a log that dropped output gets its truncation marker."""
        pipe = p.capture if stream == "out" else p.errpipe
        if pipe is None:
            return
        self.sel.unregister(pipe)
        pipe.close()
        if stream == "out":
            p.capture = None
        else:
            p.errpipe = None
        dropped = node.log_dropped.get(stream, 0)
        f = node.out_file if stream == "out" else node.err_file
        if not dropped or f is None or node.log_error:
            return
        node.log_dropped[stream] = 0
        cap = self.o.settings.max_step_log_bytes
        marker = b"" if node.log_nl.get(stream, True) else b"\n"
        marker += (
            f"[dagloop: output truncated after {cap} bytes; {dropped} more bytes discarded]\n"
        ).encode()
        room = node.log_room.get(stream, 0)
        if room - len(marker) < -_MARKER_ROOM:
            return  # markers of earlier executions filled their room: the disk stays bounded
        try:
            _write_all(f.fileno(), memoryview(marker))
        except OSError:
            return
        node.log_room[stream] = room - len(marker)
        node.log_nl[stream] = True

    def _drain_after_exit(self, node: Node, p: _Proc) -> None:
        """The process exited: pump what its pipes hold, but wait for EOF only briefly.

        A descendant that left the step's group (setsid, double fork) can hold the write ends
        for ever; waiting for EOF would keep the run `running` as long as it lives (issue 8
        #6). Output written within `_PIPE_LINGER_SECONDS` after the exit still counts.
        """
        deadline = time.monotonic() + _PIPE_LINGER_SECONDS
        poller = select.poll()
        open_pipes = {
            pipe.fileno(): stream
            for stream, pipe in (("out", p.capture), ("err", p.errpipe))
            if pipe is not None
        }
        for fd in open_pipes:
            poller.register(fd, select.POLLIN)
        while open_pipes:
            left_ms = max(0.0, deadline - time.monotonic()) * 1000
            ready = poller.poll(left_ms)
            if not ready:
                break
            for fd, _ev in ready:
                stream = open_pipes.get(fd)
                if stream is not None and not self._drain(node, p, stream):
                    poller.unregister(fd)  # EOF: the pipe is closed and unregistered
                    del open_pipes[fd]
        for stream in ("out", "err"):
            self._close_pipe(node, p, stream)

    def _reap(self, node: Node, p: _Proc) -> None:
        if p.capture is not None or p.errpipe is not None:
            self._drain_after_exit(node, p)
        self.sel.unregister(p.pidfd)
        os.close(p.pidfd)
        code = p.popen.wait()
        node.procs.remove(p)
        if code < 0:
            sig = -code
            exit_code = 128 + sig
            try:
                err = f"signal: {_SIGNAL_TEXT.get(sig, signal.Signals(sig).name)}"
            except ValueError:
                err = f"signal {sig}"
        else:
            exit_code = code
            err = f"exit status {code}" if code else ""
        if node.step.call is not None:
            node.results.append(self._call_result(p))
            if node.items and not node.stopping and not self.canceled:
                self._spawn_calls(node)
                return
            if node.procs:
                return
            if node.stopping or self.canceled:
                self._end_execution(node, exit_code or 1, err or "aborted")
                return
            self._finish_calls(node)
            return
        if exit_code == 0 and node.queue and not node.stopping:
            self._spawn_next(node)
            return
        node.queue = []
        self._end_execution(node, exit_code, err)

    # ------------------------------------------------------------------ ending

    def _end_execution(self, node: Node, exit_code: int, err: str) -> None:
        """One execution ended: decide retry, repeat, or the node's final status."""
        if node.procs:
            return
        node.kill_at = node.resend_at = None
        node.last_exit = exit_code
        node.exit_code = exit_code
        if node.script_file:
            try:
                os.unlink(node.script_file)
            except OSError:
                pass
            node.script_file = ""
        if node.step.output is not None:
            # Dagu keeps only the last execution's stdout (retries and repetitions alike)
            node.captured_runs = [node.captured.decode("utf-8", "replace")]
        if node.log_error and exit_code == 0:
            exit_code = 1
            err = node.log_error
        if node.overflow and exit_code == 0:
            exit_code = 1
            err = (
                "failed to capture output: output exceeded maximum size limit of "
                f"{self.spec.max_output_size} bytes"
            )
        if node.timed_out:
            exit_code = 124
            node.exit_code = 124
            elapsed = time.time() - (node.started_at or time.time())
            err = (
                f"step timed out after {_go_seconds(elapsed)} "
                f"(timeout: {_go_seconds(float(node.step.timeout_sec))}): context deadline exceeded"
            )
        if node.stopping:
            # Dagu does not count an execution ended by a stop in doneCount
            self._final(node, StepStatus.ABORTED, exit_code, err or "aborted")
            return
        if exit_code != 0 and not node.timed_out and not self.deadline_hit:
            if node.step.continue_on.mark_success and self._continue_matches(node, exit_code):
                node.done_count += 1
                self._final(node, StepStatus.SUCCEEDED, exit_code, "")
                return
            if self._should_retry(node, exit_code):
                return  # a retried execution counts in retryCount only, as in Dagu
        node.done_count += 1
        if self._should_repeat(node, exit_code):
            return
        if exit_code != 0:
            text = self._error_text(node, err or f"exit status {exit_code}")
            self._final(node, StepStatus.FAILED, exit_code, text)
        else:
            self._final(node, StepStatus.SUCCEEDED, 0, "")

    def _continue_matches(self, node: Node, exit_code: int) -> bool:
        co = node.step.continue_on
        node.exit_code = exit_code
        if co.failure or (co.exit_code and exit_code in co.exit_code):
            return True
        if co.output:
            self._close_logs(node)
            return _log_matches(node.stdout_path, co.output)
        return not co.exit_code and not co.output

    def _error_text(self, node: Node, err: str) -> str:
        """Dagu's node error: `failed to execute step "X": exit status 2`, the stderr tail
        after an exit status; a step timeout is reported as it is."""
        if err.startswith("step timed out"):
            return err
        text = f'failed to execute step "{node.name}": {err}'
        if err.startswith("exit status") and is_full(self.o.log_dir):
            # The step wrote into a full log disk; its own error went to the same disk, so
            # the reason is told from the file system (issue 8 #22).
            text += f"\n{ENOSPC_TEXT} on {self.o.log_dir}: the step's output was not written"
        if err.startswith("exit status"):
            tail = proc.read_tail(node.stderr_path, _TAIL_BYTES).strip()
            if tail:
                text += f"\nrecent stderr (tail):\n{tail}\n"
        return text

    def _eval_int(self, value: int | str, node: Node) -> int:
        if isinstance(value, int):
            return value
        text = ex.expand(value, self._scope(node), fallback=self.o.environ)
        text = ex.eval_backticks(text, env=node.env, cwd=node.cwd)
        try:
            return int(text.strip())
        except ValueError:
            return 0

    def _should_retry(self, node: Node, exit_code: int) -> bool:
        rp = node.step.retry_policy
        if rp is None or self.canceled:
            return False
        limit = self._eval_int(rp.limit, node)
        if node.retry_count >= limit:
            return False
        if rp.exit_code and exit_code not in rp.exit_code:
            return False
        interval = float(self._eval_int(rp.interval_sec, node))
        if rp.backoff:
            interval = interval * (rp.backoff**node.retry_count)
        if rp.max_interval_sec:
            interval = min(interval, float(rp.max_interval_sec))
        node.retry_count += 1
        node.retried_at = time.time()
        node.repeat_wait = False
        node.wait_until = time.monotonic() + interval
        self._save(node)
        return True

    def _should_repeat(self, node: Node, exit_code: int) -> bool:
        rp = node.step.repeat_policy
        if rp is None or rp.repeat is None or self.canceled or self.deadline_hit:
            return False
        if rp.limit and node.done_count >= rp.limit:
            return False
        if rp.condition is not None:
            ok, _ = self._check_condition(rp, node.env, node.cwd, node, repeat=True)
            match = ok
        elif rp.exit_code:
            match = exit_code in rp.exit_code
        else:
            match = exit_code == 0
        again = match if rp.repeat == "while" else not match
        if rp.condition is None and not rp.exit_code and rp.repeat == "while" and exit_code != 0:
            again = False
        if not again:
            return False
        interval = float(rp.interval_sec)
        if rp.backoff:
            interval = interval * (rp.backoff**node.repeat_n)
        if rp.max_interval_sec:
            interval = min(interval, float(rp.max_interval_sec))
        node.repeat_n += 1
        node.repeat_wait = True
        node.wait_until = time.monotonic() + interval
        self._save(node)
        return True

    def _final(self, node: Node, status: StepStatus, exit_code: int | None, err: str) -> None:
        self._close_logs(node)
        node.status = status
        node.exit_code = exit_code
        node.error = err
        node.finished_at = time.time()
        node.wait_until = node.timeout_at = node.kill_at = node.resend_at = None
        self._active -= 1
        if node.step.output is not None and node.captured_runs:
            value = "\n".join(node.captured_runs).strip()
            if node.step.call is None:
                value = "\n".join(r.strip() for r in node.captured_runs if r.strip() or True)
                value = value.strip()
            # a step whose output overflowed maxOutputSize publishes nothing (Dagu)
            if status in (StepStatus.SUCCEEDED, StepStatus.FAILED) and not node.overflow:
                node.outputs = {node.step.output.name: value}
        if status == StepStatus.FAILED and not (
            node.kind == "step" and node.step.continue_on.mark_success
        ):
            self.last_error = err or "failed"
        self._publish(node)
        self._save(node, pgid=None)

    def _publish(self, node: Node) -> None:
        # the init handler's output is not visible to the steps (Dagu, handlers_init)
        for k, v in node.outputs.items() if node.kind != "onInit" else ():
            self.outputs[k] = v
        if node.step.id:
            self.step_refs[node.step.id] = {
                "stdout": node.stdout_path,
                "stderr": node.stderr_path,
                "exitCode": str(node.exit_code if node.exit_code is not None else ""),
            }

    # ------------------------------------------------------------------ conditions

    def _check_condition(
        self,
        cond: Any,
        env: Mapping[str, str],
        cwd: str,
        node: Node | None = None,
        *,
        repeat: bool = False,
    ) -> tuple[bool, str]:
        """(met, description). A condition without `expected` is a command (met on exit 0)."""
        scope = self._scope(node) if node is not None else dict(self.dag_vars)
        text = ex.expand(cond.condition, scope, step_refs=self.step_refs, fallback=env)
        negate = bool(getattr(cond, "negate", False))
        if cond.expected is None:
            try:
                r = subprocess.run(
                    ["sh", "-c", text],
                    env=dict(env),
                    cwd=cwd if os.path.isdir(cwd) else None,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                    start_new_session=True,
                )
                met = r.returncode == 0
            except OSError:
                met = False
        else:
            value = ex.eval_backticks(text, env=env, cwd=cwd if os.path.isdir(cwd) else None)
            expected = ex.expand(cond.expected, scope, step_refs=self.step_refs, fallback=env)
            if expected.startswith("re:"):
                try:
                    met = re.search(expected[3:], value) is not None
                except re.error:
                    met = False
            else:
                met = value == expected
        if negate:
            met = not met
        return met, f"{cond.condition!r}"

    # ------------------------------------------------------------------ cleanup

    def _cleanup_all(self) -> None:
        """Nothing of this run may outlive it: kill what is left (normally nothing)."""
        groups = [p.popen.pid for n in [*self.nodes, *self.handlers.values()] for p in n.procs]
        for g in groups:
            proc.kill_group(g, signal.SIGKILL)
        for n in [*self.nodes, *self.handlers.values()]:
            for p in n.procs:
                try:
                    p.popen.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            self._close_logs(n)
        # Always, not only after a stop: no process outlives its run (DESIGN §3.3), and a
        # setsid escapee of a succeeded step would otherwise run on unsupervised (issue 8 #6).
        # As a subreaper we adopted every orphaned descendant: with no child left there is
        # none, and the scan of every process's environment is skipped (fifty runners ending
        # at one minute boundary each paid for it while the others were starting).
        if not self.subreaper or proc.reap_adopted():
            for pid in proc.find_escapees(self.dag.name, self.run.run_id):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            self.sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        except OSError:
            pass


def _write_all(fd: int, data: memoryview) -> None:
    """os.write until all of `data` is written (a regular file may take part of it)."""
    while data:
        n = os.write(fd, data)
        data = data[n:]


_SIGNAL_TEXT: dict[int, str] = {
    signal.SIGTERM: "terminated",
    signal.SIGKILL: "killed",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGQUIT: "quit",
    signal.SIGABRT: "aborted",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGPIPE: "broken pipe",
    signal.SIGUSR1: "user defined signal 1",
    signal.SIGUSR2: "user defined signal 2",
}


def _go_seconds(seconds: float) -> str:
    """A duration as Go prints it, to the millisecond (`1.003s`, `1m30s`, `2h0m0s`)."""
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def _child_outputs(doc: Mapping[str, Any]) -> dict[str, str]:
    """A sub-run's output variables by their own names (`GREETING`, not outputs.json's camelCase
    keys; `omit`ted ones included), sorted by name as Go's JSON encoder orders a map."""
    found: dict[str, str] = {}
    for n in doc.get("nodes") or []:
        for item in n.get("outputVariables") or []:
            key, sep, value = str(item).partition("=")
            if sep:
                found[key] = value
    return dict(sorted(found.items()))


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
    return d


# --------------------------------------------------------------------------- heartbeat


class Heartbeat:
    """Updates `heartbeat_at` of a run every interval from a daemon thread.

    The thread opens its own store connection lazily, at its first beat, so a short run
    never pays for it.
    """

    def __init__(self, location: Path | str, run: int, interval_seconds: float) -> None:
        self._location = location  # the SQLite file or the PostgreSQL URL
        self._run = run
        self._interval = max(0.05, interval_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (does not wait for a beat in progress beyond a second)."""
        self._stop.set()
        self._thread.join(timeout=1.0)

    def _beat(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if store is None:
                        store = Store(self._location, role="runner")
                    store.update_run(self._run, heartbeat_at=time.time())
                except Exception:  # a busy database must not kill the run
                    continue
        finally:
            if store is not None:
                store.close()


def host_name() -> str:
    """This host's name, for the run record."""
    return socket.gethostname()
