"""The runner: executes one DAG run in this process, as `dagu start` does.

Reference: dagu-1.30.md §1, §4, §7.10-11, §8.

Owns the orchestration of a run: the order of DAG preconditions, init, steps and handlers;
starting each step when it is ready (`maxActiveSteps`), its executions (processes, Python
executors, sub-DAG children), step and DAG timeouts, retry and repeat waits, stop handling
(signals) and the cleanup. Every rule it follows is a decision of `controller.engine.policies`
(retry, repeat, continueOn, readiness, run status); it gathers their inputs and acts on them.
Its collaborators: `graph` (the nodes), `variables` (env, outputs, expansion scope), `command`
(argvs), `conditions`, `pump` (pipes into logs), `calls` (the children of `call:` steps),
`exits` (Dagu's error texts), `writes` (buffered step rows), `stopping` (signals and kills),
`executors` (http, jq, mail).

Design: one thread, one selector. Each running process contributes a pidfd (readable when it
exits) and its stdout and stderr pipes, which the pump moves into the step's log files up to
`settings.max_step_log_bytes` (and stdout into `output:` capture); timers (timeouts,
retry/repeat waits, stop escalation) are the select timeout. No thread per step. Executors
that are Python code (`http`, `mail`, `jq`) run in a worker thread and wake the loop through a
pipe.

Called by `controller.engine.launch.execute_run`, for `controller.engine.start` (the
`start`/`retry`/`restart` verbs and the fork-server's runners, which the control loop and the
workers launch).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controller import process as proc
from controller import runjournal
from controller.diskfull import describe_os_error
from controller.engine import expand as ex
from controller.engine.calls import CallSteps
from controller.engine.command import build_argvs, step_shell
from controller.engine.conditions import check_condition
from controller.engine.executors import EXECUTORS, ExecRequest
from controller.engine.exits import process_exit, step_error_text, timeout_text
from controller.engine.graph import Node, Proc, keep_previous, make_nodes, rerun_names
from controller.engine.policies import (
    SUCCEEDED_STATUSES,
    ContinueDecision,
    ContinueOnRule,
    RepeatRule,
    RetryRule,
    StepOutcome,
    Upstream,
    decide_continue,
    decide_readiness,
    decide_repeat,
    decide_retry,
    derive_run_status,
    repeat_refusal,
)
from controller.engine.pump import (
    CaptureWriter,
    Pump,
    TailWriter,
    close_logs,
    log_paths,
    open_logs,
    open_redirects,
    precreate_logs,
    read_log_text,
)
from controller.engine.stopping import Stopper
from controller.engine.subdag import calls_partial
from controller.engine.variables import RunVars, SecretError
from controller.engine.writes import StepWriter
from controller.runevents import RunEvents
from controller.store.records import RunRecord, StoreUnavailable
from controller.store.store import Store
from model.status import RunStatus, StepStatus

__all__ = ["Runner", "RunnerOptions"]

_RESEND_SECONDS = 2.0


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
    events: RunEvents  # where the run's log events go (its run.log, maybe stderr)
    previous: Mapping[str, Any] | None = None  # retry: name -> StepRecord of the last attempt
    retry_step: str | None = None
    progress: Callable[[Node], None] | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    step_ids: Sequence[int] | None = None  # rows of `initial_step_rows`, written with the claim
    inherited_secrets: Sequence[str] = ()  # a parent run's secret values (sub-DAG runs)
    note: Callable[[str], None] | None = None  # one line for the run log (a database outage)


class Runner:
    """Executes one run; `execute()` returns the final RunStatus."""

    def __init__(self, opts: RunnerOptions) -> None:
        self.o = opts
        self.dag = opts.dag
        self.spec = opts.dag.spec
        self.store = opts.store
        self.run = opts.run
        self.sel = selectors.DefaultSelector()
        self.pump = Pump(
            self.sel,
            max_log_bytes=opts.settings.max_step_log_bytes,
            max_output_size=self.spec.max_output_size,
            log_dir=opts.log_dir,
        )
        self.canceled = False
        self.last_error = ""
        self.deadline_hit = False
        self.subreaper = False  # orphaned descendants become our children (`execute`)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self.vars = RunVars(dag=opts.dag, settings=opts.settings, environ=opts.environ)
        self.workdir = self.vars.workdir
        self.nodes: list[Node] = []
        self.handlers: dict[str, Node] = {}
        self._active = 0
        self._dag_deadline: float | None = None
        # `delaySec`: Dagu 1.30.2 pauses its dispatch loop after every step it starts
        # (reference §8.14); no step starts before this monotonic time.
        self._start_gate = 0.0
        self.writes = StepWriter(
            opts.store,
            opts.run.id,
            journal=runjournal.journal_path(opts.log_dir),
            note=opts.note,
        )
        self.events = opts.events
        self.notes: list[str] = []  # for the run's `notes` (what went wrong but did not fail it)
        self.stopper = Stopper(dag_name=opts.dag.name, run_id=opts.run.run_id, events=self.events)
        self.calls = CallSteps(
            dag=opts.dag,
            run=opts.run,
            vars=self.vars,
            settings=opts.settings,
            environ=opts.environ,
            track=self._track,
            save=self._save,
            end=self._end_execution,
        )

    # ------------------------------------------------------------------ setup

    def expand_text(self, text: str) -> str:
        """`${VAR}` expansion with the run's variables (DAG env, dotenv, params, outputs)."""
        return self.vars.expand_text(text)

    @property
    def dag_vars(self) -> dict[str, str]:
        """DAG env, dotenv and params, as resolved for this run."""
        return self.vars.dag_vars

    @property
    def dotenv_values(self) -> dict[str, str]:
        """The dotenv files' values (masked in alerts)."""
        return self.vars.dotenv_values

    def _make_nodes(self) -> None:
        self.nodes, self.handlers = make_nodes(self.spec)
        if self.o.previous:
            self._keep_previous(self.o.previous)

    def _keep_previous(self, prev: Mapping[str, Any]) -> None:
        """Keep succeeded steps of the previous attempt; re-run the rest and their downstream."""
        rerun = rerun_names(self.nodes, prev, self.o.retry_step)
        for node in self.nodes:
            rec = prev.get(node.name)
            if node.name in rerun or rec is None:
                continue
            keep_previous(node, rec)
            self.vars.publish(node)

    def _save(self, node: Node, **extra: Any) -> None:
        """Record the node's state: buffered (`StepWriter`), written with the next step
        changes within `STEP_WRITE_DELAY_SECONDS`, or with the run's final status."""
        self.writes.save(node, **extra)
        self.events.step(node)
        if self.o.progress is not None:
            self.o.progress(node)

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: object) -> None:
        self.canceled = True
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
            self.writes.flush_quietly()  # what the steps did is kept even when the run breaks
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._cleanup_all()

    def _execute(self) -> RunStatus:
        self.o.log_dir.mkdir(parents=True, exist_ok=True)
        proc.make_fds_cloexec()
        self._make_nodes()
        precreate_logs([p for n in self.nodes if not n.keep for p in log_paths(n, self.o.log_dir)])
        nodes = [*self.nodes, *self.handlers.values()]
        self.writes.record_nodes(nodes, None if self.o.previous else self.o.step_ids)
        try:
            self.vars.build(self.o.params)
        except SecretError as exc:  # Dagu: the run fails before any step, exit 1
            return self._finish(RunStatus.FAILED, f"failed to resolve secrets: {exc}")
        except Exception as exc:  # a bad env entry: the run fails before any step
            return self._finish(RunStatus.FAILED, f"cannot build the environment: {exc}")
        self.vars.inherit_secrets(self.o.inherited_secrets)
        self.pump.masker = self.writes.masker = self.vars.secret_masker
        # Dagu skips such a file silently; the run goes on without it, but says so.
        for path, error in self.vars.dotenv_errors:
            self.events.note("WARNING", "dotenv file skipped", file=path, error=error)
            self.notes.append(f"dotenv file {path} skipped: {error}")
        self.workdir = self.vars.workdir  # `workingDir` may use the DAG env and params
        if self.spec.timeout_sec:
            self._dag_deadline = time.monotonic() + self.spec.timeout_sec
        # DAG-level preconditions: not met -> aborted, steps not started; the abort and exit
        # handlers still run, the init handler does not (Dagu, precondition_dag). A DAG without
        # steps succeeds whatever its preconditions say (Dagu, no_steps_handlers).
        for cond in self.spec.preconditions if self.nodes else ():
            ok, why = self._check_condition(cond, self.vars.base_env, str(self.workdir))
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
            status = self._run_status()
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
        """Record the final status, waiting out a database outage up to
        `runner_buffer_seconds`; past it, raise `StoreUnavailable` (the journal keeps the
        writes, and whoever reaps the run applies them)."""
        written = self.writes.flush(
            status=status,
            finished_at=time.time(),
            error=self.writes.mask(error) if status not in (RunStatus.SUCCEEDED,) else "",
        )
        limit = float(self.o.settings.runner_buffer_seconds)
        if not written and not self.writes.drain(give_up_after_seconds=limit):
            raise StoreUnavailable(
                f"run {status.label}, but the state database refused its writes for "
                f"{limit:g} s ({self.writes.last_refusal}); they are kept in "
                f"{runjournal.journal_path(self.o.log_dir)} for whoever reaps the run"
            )
        return status

    def _run_handler(self, event: str, status: RunStatus | None) -> bool:
        node = self.handlers[event]
        node.env_extra = {"DAG_RUN_STATUS": status.label if status is not None else "running"}
        saved_error = self.last_error
        self._loop([node])
        # A handler whose precondition is not met is skipped, and Dagu carries on as if it
        # had succeeded: the steps still run after a skipped init (handlers_init_skipped).
        if node.status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            return False
        self.last_error = saved_error
        return True

    def _run_status(self) -> RunStatus:
        """The run's status from its main steps (`policies.derive_run_status`)."""
        steps = [
            StepOutcome(n.status, n.status == StepStatus.FAILED and self._continue_on(n).tolerated)
            for n in self.nodes
        ]
        decision = derive_run_status(steps, canceled=self.canceled, failed=bool(self.last_error))
        return decision.status

    # ------------------------------------------------------------------ loop

    def _loop(self, nodes: list[Node]) -> None:
        limit = self.spec.max_active_steps or 0
        pending = [n for n in nodes if not n.keep and n.status == StepStatus.NOT_STARTED]
        while True:
            if not self.canceled and not self.deadline_hit:
                still: list[Node] = []
                for node in pending:
                    verdict = self._readiness(node)
                    if verdict == "wait":
                        still.append(node)
                        continue
                    if verdict == "run":
                        gated = time.monotonic() < self._start_gate
                        if gated or (limit and self._active >= limit):
                            still.append(node)
                            continue
                        self._start_node(node)
                        if self.spec.delay_sec:
                            self._start_gate = time.monotonic() + self.spec.delay_sec
                pending = still
            running = [n for n in nodes if n.status == StepStatus.RUNNING]
            if not running:
                if self.canceled or self.deadline_hit or not pending:
                    return
                if time.monotonic() < self._start_gate:
                    self._wait([])  # until the gate opens, a stop or the DAG deadline
                    continue
                if all(self._readiness(n) == "wait" for n in pending) and not any(
                    n.status == StepStatus.RUNNING for n in self.nodes
                ):
                    return  # nothing can make progress (should not happen after validation)
                continue
            self._wait(running)

    def _readiness(self, node: Node) -> str:
        """ "wait", "run", or "settle" (decided without running: skipped or aborted, recorded
        here) from the node's dependencies (`policies.decide_readiness`)."""
        statuses = [dep.status for dep in node.deps]
        if statuses == node.waited_on:
            return "wait"
        # Succeeded dependencies are passed over by the policy anyway, and this runs for every
        # pending step on every pass of the loop, so they are not even built; a failed one's
        # log is read only for its continueOn (the `waited_on` check above spares repeats).
        upstream = (
            Upstream(
                dep.status,
                failure_tolerated=dep.status == StepStatus.FAILED
                and self._continue_on(dep).tolerated,
                continue_on_skipped=bool(dep.step.continue_on.skipped),
            )
            for dep in node.deps
            if dep.status not in SUCCEEDED_STATUSES
        )
        decision = decide_readiness(upstream)
        if decision.status is not None:
            self._settle(node, decision.status, decision.error)
        node.waited_on = statuses if decision.verdict == "wait" else None
        return decision.verdict

    def _continue_on(self, node: Node, exit_code: int | None = None) -> ContinueDecision:
        """What the node's `continueOn` makes of its failure (`exit_code`, else the node's),
        its stdout log read when an output pattern needs it."""
        co = node.step.continue_on
        rule = ContinueOnRule(
            failure=bool(co.failure),
            skipped=bool(co.skipped),
            exit_codes=tuple(co.exit_code),
            output_patterns=tuple(co.output),
            mark_success=bool(co.mark_success),
        )
        text = read_log_text(node.stdout_path) if co.output else None
        code = node.exit_code if exit_code is None else exit_code
        return decide_continue(rule, exit_code=code, stdout_text=text)

    def _settle(self, node: Node, status: StepStatus, error: str) -> None:
        node.status = status
        node.error = error
        self._save(node)

    # ------------------------------------------------------------------ starting

    def _start_node(self, node: Node) -> None:
        node.stdout_path, node.stderr_path = log_paths(node, self.o.log_dir)
        node.status = StepStatus.RUNNING
        node.started_at = time.time()
        node.finished_at = None
        node.error = ""
        node.exit_code = None
        node.captured_runs = []
        try:
            node.env = self.vars.node_env(
                node, dag_name=self.dag.name, run_id=self.run.run_id, log_file=self.run.log_file
            )
            node.cwd = self.vars.step_cwd(node)
        except ValueError as exc:
            # a reference that cannot be evaluated at all (a `${VAR.filter}` without a jq
            # program): the step fails saying why, the run goes on deciding as for any failure
            node.cwd = str(self.vars.workdir)
            self._fail_now(node, f"cannot build the step's environment: {exc}")
            return
        node.env["PWD"] = node.cwd
        self._active += 1
        # Dagu settles a text retryPolicy before the preconditions; a value that is not an
        # integer fails the step before it runs (retry_limit_sources).
        if problem := self._settle_retry_policy(node):
            self._active -= 1
            self._fail_now(node, f"failed to setup retry policy: {problem}")
            return
        # Preconditions: not met -> skipped (not an error).
        for cond in node.step.preconditions:
            try:
                ok, _why = self._check_condition(cond, node.env, node.cwd, node)
            except ValueError as exc:  # as above: unevaluable, never silently skipped
                self._active -= 1
                self._fail_now(node, f"cannot evaluate a precondition: {exc}")
                return
            if not ok:
                self._active -= 1
                node.finished_at = time.time()
                node.status = StepStatus.SKIPPED
                node.error = ""
                self._save(node)
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

    def _settle_retry_policy(self, node: Node) -> str:
        """Evaluate the node's retry limit and interval; what is wrong with them, or ""."""
        rp = node.step.retry_policy
        if rp is None:
            return ""
        try:
            node.retry_limit = self.vars.policy_int(rp.limit)
        except ValueError as exc:
            return f'failed to substitute retry limit "{rp.limit}": {exc}'
        try:
            node.retry_interval_sec = self.vars.policy_int(rp.interval_sec)
        except ValueError as exc:
            return f'failed to substitute retry interval "{rp.interval_sec}": {exc}'
        return ""

    def _fail_now(self, node: Node, error: str) -> None:
        node.status = StepStatus.FAILED
        node.error = error
        node.finished_at = time.time()
        self.last_error = error
        self._save(node)

    def _begin_execution(self, node: Node) -> None:
        """Start one execution (attempt / repetition) of a running node."""
        node.captured = bytearray()
        node.overflow = False
        node.wait_until = None
        node.log_error = ""
        try:
            open_logs(node, self.o.settings.max_step_log_bytes)
        except OSError as exc:  # e.g. a full log disk (issue 8 #22): the step fails, not us
            self._end_execution(node, 1, f"cannot open the step log {describe_os_error(exc)}")
            return
        # Dagu tees stdout/stderr into these files too; one that cannot be opened (missing
        # directory) fails the step before it runs (Dagu 1.30.2, step_stdout_redirect).
        if (node.step.stdout or node.step.stderr) and (
            problem := open_redirects(node, self.vars.redirect_path)
        ):
            self._end_execution(node, 1, problem)
            return
        step = node.step
        if step.call is not None:
            self.calls.start(node, self.workdir)
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
        default = self.o.settings.default_shell or self.o.environ.get("SHELL") or "sh"
        argvs, node.script_file = build_argvs(
            step,
            shell=step_shell(step, self.spec.shell, default),
            scope=self.vars.scope(node),
            step_refs=self.vars.step_refs,
            shell_vars=self.vars.shell_vars(step),
            script_dir=self.o.log_dir,
        )
        return argvs

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
            TailWriter(node, node.err_file).write((msg + "\n").encode())
            self._end_execution(node, 127, msg)
            return
        except OSError as exc:
            TailWriter(node, node.err_file).write(f"{exc}\n".encode())
            self._end_execution(node, 126, str(exc))
            return
        self._track(node, popen, capture=popen.stdout, errpipe=popen.stderr)

    def _track(
        self, node: Node, popen: subprocess.Popen[bytes], *, capture: IO[bytes] | None, **kw: Any
    ) -> None:
        pidfd = os.pidfd_open(popen.pid)
        p = Proc(popen=popen, pidfd=pidfd, capture=capture, **kw)
        node.procs.append(p)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", (node, p)))
        for kind, pipe in (("out", capture), ("err", p.errpipe)):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                self.sel.register(pipe, selectors.EVENT_READ, (kind, (node, p)))
        if len(node.procs) == 1 and node.kind == "step" and node.done_count + node.retry_count:
            # a retry or repeat: the group changed (the first one is saved by _start_node)
            self.writes.buffer(node.row, pgid=popen.pid)

    def _start_thread(self, node: Node, fn: Callable[[ExecRequest], int]) -> None:
        assert node.out_file is not None and node.err_file is not None
        req = ExecRequest(
            step=node.step,
            env=node.env,
            cwd=node.cwd,
            stdout=CaptureWriter(node, node.out_file, self.spec.max_output_size),  # type: ignore[arg-type]
            stderr=TailWriter(node, node.err_file),  # type: ignore[arg-type]
            timeout_seconds=float(node.step.timeout_sec) or None,
            dag=self.dag,
            expand=lambda text: ex.expand(
                text, {**self.vars.scope(node), **node.env}, step_refs=self.vars.step_refs
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
            self.pump.remask_logs(node)  # before the step ends: its logs are then at rest
            node.thread_result.append(code)
            try:
                os.write(self._wake_w, b"t")
            except OSError:
                pass

        threading.Thread(target=work, daemon=True, name=f"step-{node.name}").start()

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
        if self.writes.flush_at is not None:
            d = self.writes.flush_at - now
            timeout = d if timeout is None else min(timeout, d)
        if self._start_gate > now:
            d = self._start_gate - now
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
                    self.pump.drain(node, p, kind)
            elif kind == "exit":
                node, p = data
                if p in node.procs:
                    self._reap(node, p)
        now = time.monotonic()
        if self.writes.flush_at is not None and now >= self.writes.flush_at:
            self.writes.flush()
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
                self.stopper.signal_node(node, node.stop_signal)
                node.kill_at = now + self.spec.max_clean_up_time_sec
            if node.kill_at is not None and now >= node.kill_at:
                self.stopper.signal_node(node, signal.SIGKILL)
                node.kill_at = None
                node.resend_at = None
            if node.resend_at is not None and now >= node.resend_at:
                self.stopper.signal_node(node, node.stop_signal)
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
            self.stopper.signal_node(node, sig)
            node.resend_at = now + _RESEND_SECONDS
            node.kill_at = now + self.spec.max_clean_up_time_sec
            if not node.procs and node.thread_result == [] and node.step.executor_type in EXECUTORS:
                # a Python executor cannot be signalled; abandon it
                self._final(node, StepStatus.ABORTED, None, "")

    def _reap(self, node: Node, p: Proc) -> None:
        if p.capture is not None or p.errpipe is not None:
            self.pump.drain_after_exit(node, p)
        self.sel.unregister(p.pidfd)
        os.close(p.pidfd)
        code = p.popen.wait()
        node.procs.remove(p)
        exit_code, err = process_exit(code)
        if node.step.call is not None:
            stopping = node.stopping or self.canceled
            self.calls.reaped(node, p, exit_code, err, stopping=stopping, workdir=self.workdir)
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
            err = timeout_text(elapsed, float(node.step.timeout_sec))
        if node.stopping:
            # Dagu does not count an execution ended by a stop in doneCount
            self._final(node, StepStatus.ABORTED, exit_code, err or "aborted")
            return
        # Dagu executes a handler once: its retryPolicy, repeatPolicy and continueOn are not
        # applied (runEventHandler), so only a step's execution may be retried or repeated.
        is_step = node.kind == "step"
        if exit_code != 0 and not node.timed_out and not self.deadline_hit and is_step:
            # Dagu retries first; markSuccess is consulted only once no retry is left, so a
            # code the retryPolicy does not list fails the step while retries remain.
            retries_left = node.step.retry_policy is not None and (
                node.retry_count < node.retry_limit
            )
            if self._retry(node, exit_code):
                return  # a retried execution counts in retryCount only, as in Dagu
            if (
                not retries_left
                and node.step.continue_on.mark_success
                and self._marked_success(node, exit_code)
            ):
                node.done_count += 1
                self._final(node, StepStatus.SUCCEEDED, exit_code, "")
                return
        node.done_count += 1
        if is_step and self._repeat(node, exit_code):
            return
        if exit_code != 0:
            text = step_error_text(
                node.name,
                err or f"exit status {exit_code}",
                log_dir=self.o.log_dir,
                stderr_tail=self.pump.recent_stderr(node),
            )
            self._final(node, StepStatus.FAILED, exit_code, text)
        elif node.step.call is not None and calls_partial(node):
            self._final(node, StepStatus.PARTIALLY_SUCCEEDED, 0, "")
        else:
            self._final(node, StepStatus.SUCCEEDED, 0, "")

    def _marked_success(self, node: Node, exit_code: int) -> bool:
        """continueOn.markSuccess: the failed execution ends the step succeeded."""
        node.exit_code = exit_code
        if node.step.continue_on.output:
            close_logs(node)  # its stdout is searched: this execution writes no more
        return self._continue_on(node, exit_code).mark_success

    def _retry(self, node: Node, exit_code: int) -> bool:
        """Schedule a retry of the failed execution if its retryPolicy says so
        (`policies.decide_retry`)."""
        rp = node.step.retry_policy
        if rp is None:
            return False
        rule = RetryRule(
            limit=node.retry_limit,
            exit_codes=tuple(rp.exit_code),
            backoff=rp.backoff,
            max_interval_seconds=rp.max_interval_sec,
        )
        decision = decide_retry(
            rule,
            retry_count=node.retry_count,
            exit_code=exit_code,
            stopped=self.canceled,
            interval_seconds=float(node.retry_interval_sec),
        )
        if not decision.retry:
            return False
        node.retry_count += 1
        node.retried_at = time.time()
        node.repeat_wait = False
        node.wait_until = time.monotonic() + decision.delay_seconds
        self._save(node)
        return True

    def _repeat(self, node: Node, exit_code: int) -> bool:
        """Schedule the next execution if the step's repeatPolicy says so
        (`policies.decide_repeat`)."""
        rp = node.step.repeat_policy
        if rp is None or rp.repeat is None:
            return False
        rule = RepeatRule(
            mode=rp.repeat,
            limit=rp.limit,
            has_condition=rp.condition is not None,
            exit_codes=tuple(rp.exit_code),
            interval_seconds=float(rp.interval_sec),
            backoff=rp.backoff,
            max_interval_seconds=rp.max_interval_sec,
        )
        stopped = self.canceled or self.deadline_hit
        met: bool | None = None
        if rule.has_condition and not repeat_refusal(
            rule, done_count=node.done_count, stopped=stopped
        ):  # the condition command runs only when its answer decides
            # Dagu sets the step's output variable after each execution, so the condition
            # sees this execution's value (repeat_until_own_output)
            own = {}
            if node.step.output is not None and node.captured_runs:
                own = {node.step.output.name: node.captured_runs[-1].strip()}
            met, _ = self._check_condition(rp, {**node.env, **own}, node.cwd, node, extra=own)
        decision = decide_repeat(
            rule,
            done_count=node.done_count,
            repeat_n=node.repeat_n,
            exit_code=exit_code,
            stopped=stopped,
            condition_met=met,
        )
        if not decision.repeat:
            return False
        node.repeat_n += 1
        node.repeat_wait = True
        node.wait_until = time.monotonic() + decision.delay_seconds
        self._save(node)
        return True

    def _final(self, node: Node, status: StepStatus, exit_code: int | None, err: str) -> None:
        close_logs(node)
        node.status = status
        node.exit_code = exit_code
        node.error = err
        node.finished_at = time.time()
        node.wait_until = node.timeout_at = node.kill_at = node.resend_at = None
        self._active -= 1
        if node.step.output is not None and node.captured_runs:
            # one execution's stdout at most (the last: `_end_execution`), so a `call:` step
            # and a command alike publish it trimmed
            value = "\n".join(node.captured_runs).strip()
            # a step whose output overflowed maxOutputSize publishes nothing (Dagu)
            if (
                status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED, StepStatus.FAILED)
                and not node.overflow
            ):
                node.outputs = {node.step.output.name: value}
        if status == StepStatus.FAILED:
            self.last_error = err or "failed"
        self.vars.publish(node)
        self._save(node, pgid=None)

    # ------------------------------------------------------------------ conditions

    def _check_condition(
        self,
        cond: Any,
        env: Mapping[str, str],
        cwd: str,
        node: Node | None = None,
        *,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[bool, str]:
        """(met, description) of `cond`, expanded with the run's variables (and the node's),
        `extra` over them."""
        scope = self.vars.scope(node) if node is not None else dict(self.vars.dag_vars)
        scope.update(extra or {})
        return check_condition(cond, scope=scope, env=env, cwd=cwd, step_refs=self.vars.step_refs)

    # ------------------------------------------------------------------ cleanup

    def _cleanup_all(self) -> None:
        """Nothing of this run may outlive it (`Stopper.kill_leftovers`)."""
        self.stopper.kill_leftovers(
            [*self.nodes, *self.handlers.values()], subreaper=self.subreaper
        )
        try:
            self.sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        except OSError:
            pass
