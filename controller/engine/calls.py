"""Executing a `call:` step: starting its child runs (one, or a `parallel:` fan-out of at most
`maxConcurrent` at a time), starting the next as one ends, and the step's result document.

What the children are (targets, params, sub-run ids, command lines, the result document) is
decided by `controller.engine.subdag`; this module starts them as `dagloop start` processes
with the parent's secrets on their stdin, and hands each to the runner's selector
(`track`). How an execution ends (retry, repeat, final status) stays the runner's (`end`).

Called by the runner (`controller.engine.runner`): `start` from `_begin_execution`, `reaped`
from `_reap` when a child exits.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from controller import process as proc
from controller.engine import expand as ex
from controller.engine.graph import Node, Proc
from controller.engine.subdag import (
    call_argv,
    call_result,
    call_runs,
    call_target,
    calls_document,
    child_tokens,
    hand_on_secrets,
    missing_target,
    params_text,
    sub_run_id,
)
from controller.engine.variables import RunVars
from controller.store.records import RunRecord


class CallSteps:
    """Starts and collects the child runs of one run's `call:` steps."""

    def __init__(
        self,
        *,
        dag: Any,
        run: RunRecord,
        vars: RunVars,
        settings: Any,
        environ: Mapping[str, str],
        track: Callable[..., None],
        save: Callable[[Node], None],
        end: Callable[[Node, int, str], None],
    ) -> None:
        self._dag = dag
        self._run = run
        self._vars = vars
        self._settings = settings
        self._environ = environ
        self._track = track  # (node, popen, capture=..., **Proc fields): watch the child
        self._save = save
        self._end = end  # (node, exit code, error): the execution ended

    def start(self, node: Node, workdir: Path) -> None:
        """Begin an execution of the `call:` step `node`: its children, or the failure of the
        step when its target is missing or its items are none or too many (no child
        starts)."""
        node.results = []
        node.children = []
        problem = missing_target(
            ex.expand(str(node.step.call), self._vars.scope(node)),
            self._target(node, workdir),
            dags_dir=Path(self._settings.dags_dir),
            cwd=Path(node.cwd or workdir),
        )
        if problem is None:
            try:
                # the step's whole environment (OS variables, DAG_NAME ...) under its scope:
                # Dagu resolves `$HOME` in a child's params in the caller (call_params_unknown)
                scope = {**node.env, **self._vars.scope(node)}
                node.items = call_runs(node.step, scope, self._vars.step_refs)
            except ValueError as exc:  # no items, or more than Dagu allows: no child starts
                problem = str(exc)
        if problem is not None:
            node.items = []
            self._end(node, 1, problem)
            return
        self._spawn(node, workdir)

    def reaped(
        self, node: Node, p: Proc, exit_code: int, err: str, *, stopping: bool, workdir: Path
    ) -> None:
        """Child `p` of `node` exited (`exit_code`, `err`: `exits.process_exit`): start the
        next item, or end the execution once the last child is done (aborted when the step
        or the run is stopping)."""
        node.results.append(call_result(p))
        if node.items and not stopping:
            self._spawn(node, workdir)
            return
        if node.procs:
            return
        if stopping:
            self._end(node, exit_code or 1, err or "aborted")
            return
        text, error = calls_document(node)
        assert node.out_file is not None
        node.out_file.write(text.encode() + b"\n")
        if node.step.output is not None:
            node.captured = bytearray(text.encode())
        self._end(node, 1 if error else 0, error)

    def _spawn(self, node: Node, workdir: Path) -> None:
        step = node.step
        cap = step.parallel.max_concurrent if step.parallel is not None else 1
        run = self._run
        while node.items and len(node.procs) < cap:
            item, pairs = node.items.pop(0)
            text = params_text(pairs)
            execution = (node.retry_count, node.done_count)
            sid = sub_run_id(run.run_id, node.name, text, execution=execution)
            # the secrets go through a pipe, never argv or env, which other users can read
            secrets = self._vars.secrets_to_hand_on()
            argv = call_argv(
                run_id=sid,
                parent=f"{self._dag.name}:{run.run_id}",
                root=f"{run.root_dag or self._dag.name}:{run.root_run_id or run.run_id}",
                target=self._target(node, workdir),
                params=child_tokens(pairs),
                inherit_secrets=bool(secrets),
            )
            env = dict(self._environ)
            env["DAGU_HOME"] = str(self._settings.home)
            assert node.err_file is not None
            popen = proc.spawn(
                argv,
                env=env,
                cwd=node.cwd,
                stdout=subprocess.PIPE,
                stderr=node.err_file,
                stdin=subprocess.PIPE if secrets else subprocess.DEVNULL,
            )
            if popen.stdin is not None:
                hand_on_secrets(popen.stdin, secrets)
            masker = self._vars.secret_masker
            shown = masker.mask(text) if masker is not None else text
            node.children.append({"dagRunId": sid, "params": shown})
            capture: IO[bytes] | None = popen.stdout
            self._track(node, popen, capture=capture, item=item, sub_run_id=sid, sub_params=shown)
        self._save(node)

    def _target(self, node: Node, workdir: Path) -> list[str]:
        return call_target(
            node.step,
            self._vars.scope(node),
            dag=self._dag,
            dags_dir=Path(self._settings.dags_dir),
            workdir=workdir,
        )
