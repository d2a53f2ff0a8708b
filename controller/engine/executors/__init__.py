"""Step executors other than the shell: http, jq and mail, and the registry the runner
dispatches them by (`EXECUTORS`, by executor type).

A Python executor gets an `ExecRequest` (the step, its env, its log files) and returns an exit
code; the runner runs it in a worker thread. Each executor module is imported at its first
use, so a run of shell steps never loads them (the `dagloop start` path stays small).

Called by the runner (`controller.engine.runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


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


def _config(req: ExecRequest) -> dict[str, Any]:
    ex_spec = req.step.executor
    return dict(ex_spec.config) if ex_spec is not None else {}


def _http(req: ExecRequest) -> int:
    from controller.engine.executors.http import run_http_step

    return run_http_step(
        command=list(req.step.command),
        config=_config(req),
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        timeout_seconds=req.timeout_seconds,
    )


def _mail(req: ExecRequest) -> int:
    from controller.engine.executors.mail import run_mail_step

    return run_mail_step(
        config=_config(req),
        smtp=req.dag.spec.smtp,
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        working_dir=Path(req.cwd),
    )


def _jq(req: ExecRequest) -> int:
    from controller.engine.executors.jq import run_jq_step

    return run_jq_step(
        command=list(req.step.command),
        script=req.step.script,
        config=_config(req),
        expand=req.expand,
        stdout=req.stdout,  # type: ignore[arg-type]
        stderr=req.stderr,  # type: ignore[arg-type]
        timeout_seconds=req.timeout_seconds,
    )


# executor type -> callable(ExecRequest) -> exit code; run in a worker thread.
EXECUTORS: dict[str, Callable[[ExecRequest], int]] = {"http": _http, "mail": _mail, "jq": _jq}
