"""DAG read models in Dagu's JSON shapes: the `dag` of a `/dags` list item and `DAGDetails`.

Pure functions of a loaded `Dag` (plus the secret-name patterns). Env values whose names look
secret (`settings.secret_patterns`) are masked; dotenv files are never read here, and SMTP
settings and executor configurations are not exposed at all. Called by `api.dags`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from controller.secrets import secret_env_names
from model.loader import Dag
from model.spec import ConditionSpec, DagSpec, StepSpec

SECRET_MASK = "*****"


def _params(spec: DagSpec) -> list[str]:
    out = []
    position = 0
    for key, value in spec.params:
        if key is None:
            position += 1
            key = str(position)
        out.append(f"{key}={value}")
    return out


def _default_params(spec: DagSpec) -> str:
    parts = []
    for key, value in spec.params:
        quoted = json.dumps(value, ensure_ascii=False)
        parts.append(quoted if key is None else f"{key}={quoted}")
    return " ".join(parts)


def _schedule(spec: DagSpec) -> list[dict[str, str]]:
    return [{"expression": e} for e in spec.schedule.start]


def run_config(spec: DagSpec | None) -> dict[str, bool]:
    """Dagu's `RunConfig`: both booleans always present (the spec requires them), false
    unless the DAG file sets them."""
    given = spec.run_config if spec is not None else {}
    return {
        "disableParamEdit": bool(given.get("disableParamEdit", False)),
        "disableRunIdEdit": bool(given.get("disableRunIdEdit", False)),
    }


def dag_summary(dag: Dag) -> dict[str, Any]:
    """Dagu's `DAG` object of a list item."""
    spec = dag.spec
    return {
        "name": dag.name,
        "group": spec.group,
        "description": spec.description,
        "params": _params(spec),
        "defaultParams": _default_params(spec),
        "tags": list(spec.tags),
        "schedule": _schedule(spec),
        "queue": dag.queue,
        "maxActiveRuns": spec.max_active_runs,
        "runConfig": run_config(spec),
    }


def _condition(c: ConditionSpec) -> dict[str, Any]:
    return {"condition": c.condition, "expected": c.expected or "", "negate": c.negate}


def _command(text: str) -> dict[str, Any]:
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = [text]
    return {"command": tokens[0] if tokens else "", "args": tokens[1:]}


def step_json(step: StepSpec) -> dict[str, Any]:
    """Dagu's `Step` object of a step definition (executor configurations left out)."""
    commands = [_command(c) for c in step.command]
    first = commands[0] if commands else {"command": "", "args": []}
    return {
        "name": step.name,
        "id": step.id or "",
        "description": step.description,
        "dir": step.working_dir or "",
        "command": first["command"],
        "args": first["args"],
        "cmdWithArgs": step.command[0] if step.command else "",
        "commands": commands,
        "script": step.script or "",
        "stdout": step.stdout or "",
        "stderr": step.stderr or "",
        "output": step.output.name if step.output is not None else "",
        "depends": list(step.depends or []),
        "call": step.call or "",
        "executorType": step.executor_type,
        "mailOnError": step.mail_on_error,
        "preconditions": [_condition(c) for c in step.preconditions],
        "timeoutSec": step.timeout_sec,
    }


def _env(pairs: Sequence[tuple[str, str]], secret_patterns: Sequence[str]) -> list[str]:
    secret = secret_env_names((k for k, _ in pairs), secret_patterns)
    return [f"{k}={SECRET_MASK if k in secret else v}" for k, v in pairs]


def dag_details(dag: Dag, *, secret_patterns: Sequence[str]) -> dict[str, Any]:
    """Dagu's `DAGDetails`: the definition with steps, handlers and env (secrets masked)."""
    spec = dag.spec
    d = dag_summary(dag)
    d.update(
        {
            "type": spec.type,
            "env": _env(spec.env, secret_patterns),
            "logDir": spec.log_dir or "",
            "handlerOn": {event: step_json(step) for event, step in spec.handler_on.items()},
            "steps": [step_json(s) for s in spec.steps],
            "delay": spec.delay_sec,
            "histRetentionDays": spec.hist_retention_days,
            "preconditions": [_condition(c) for c in spec.preconditions],
            "maxActiveSteps": spec.max_active_steps,
            "timeoutSec": spec.timeout_sec,
            "maxCleanUpTimeSec": spec.max_clean_up_time_sec,
            "skipIfSuccessful": spec.skip_if_successful,
        }
    )
    return d
