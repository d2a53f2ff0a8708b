"""Read models of runs in Dagu's JSON shapes: the one place that builds them.

`run_details` is Dagu's `dagRunDetails` (GET /api/v2/dag-runs/{name}/{id}), `run_summary` its
`DAGRunSummary`, `outputs_document` its `outputs.json`. Used by `dagloop start --json`,
`dagloop status --json` and the API; pure apart from reading the store rows passed in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from controller.revision import revision_document
from controller.store.records import RunRecord, StepRecord
from controller.store.store import Store
from controller.utc import utc_text
from model.outputs import camel_key
from model.status import RunStatus, StepStatus

__all__ = [
    "details_document",
    "outputs_document",
    "presented",
    "rfc3339",
    "run_details",
    "run_summary",
    "step_node",
]

_HANDLER_FIELDS = {
    "onInit": "onInit",
    "onSuccess": "onSuccess",
    "onFailure": "onFailure",
    "onCancel": "onCancel",
    "onExit": "onExit",
    "onWait": "onWait",
}


def rfc3339(ts: float | None) -> str:
    """Epoch seconds → ``2026-11-25T07:27:48Z`` (UTC, second precision); "" when unset."""
    if ts is None:
        return ""
    return utc_text(ts)


def _params_text(run: RunRecord) -> str:
    return " ".join(run.params)


def presented(run: RunRecord) -> RunRecord:
    """The run as readers must see it: a `running` row whose runner is gone is `failed`
    ("lost"), from recorded liveness, until the controller or a CLI reaps it for good.

    Dagu 1.30 does the same on its read paths; without it a dead run reads as running forever.
    """
    if run.status != RunStatus.RUNNING or (run.pid is None and run.heartbeat_at is None):
        return run
    from controller.liveness import runner_alive

    if runner_alive(run):
        return run
    return replace(
        run, status=RunStatus.FAILED, error=run.error or "lost: the runner is gone (not yet reaped)"
    )


def run_summary(run: RunRecord) -> dict[str, Any]:
    """Dagu's DAGRunSummary of a run row."""
    run = presented(run)
    d: dict[str, Any] = {
        "rootDAGRunName": run.root_dag or run.dag_name,
        "rootDAGRunId": run.root_run_id or run.run_id,
        "dagRunId": run.run_id,
        "name": run.dag_name,
        "status": int(run.status),
        "statusLabel": run.status.label,
        "queuedAt": rfc3339(run.queued_at),
        "startedAt": rfc3339(run.started_at),
        "finishedAt": rfc3339(run.finished_at),
        "log": run.log_file,
        "params": _params_text(run),
        "workerId": "local",
        "attemptId": run.attempt_id,
        "error": run.error,
        # dagloop addition: e.g. alert mails that could not be delivered.
        "notes": run.notes.splitlines(),
    }
    if run.parent_run_id:
        d["parentDAGRunName"] = run.parent_dag
        d["parentDAGRunId"] = run.parent_run_id
    return d


def step_node(step: StepRecord, *, lost: bool = False) -> dict[str, Any]:
    """Dagu's Node of a step row (plus our `exitCode`); `lost`: the run's runner is gone."""
    spec = dict(step.spec) if step.spec else {}
    spec["name"] = step.name
    status = step.status
    error = step.error
    if lost and status == StepStatus.RUNNING:
        status, error = StepStatus.FAILED, error or "lost: the runner is gone"
    return {
        "step": spec,
        "stdout": step.stdout,
        "stderr": step.stderr,
        "startedAt": rfc3339(step.started_at),
        "finishedAt": rfc3339(step.finished_at),
        "status": int(status),
        "statusLabel": status.label,
        "retryCount": step.retry_count,
        "doneCount": step.done_count,
        "retriedAt": rfc3339(step.retried_at),
        "exitCode": step.exit_code,
        "error": error,
        "outputVariables": [f"{k}={v}" for k, v in step.outputs.items()],
        "children": list(step.children),
    }


def run_details(store: Store, run: RunRecord) -> dict[str, Any]:
    """Dagu's dagRunDetails of `run`, its steps read from `store` (`details_document`)."""
    return details_document(run, store.list_steps(run.id))


def details_document(run: RunRecord, steps: list[StepRecord]) -> dict[str, Any]:
    """Dagu's dagRunDetails: the summary plus `nodes` (definition order), handler nodes
    (absent when not run) and `outputs` (outputs.json's `outputs`)."""
    d = run_summary(run)
    lost = d["status"] != int(run.status)
    d["nodes"] = [step_node(s, lost=lost) for s in steps if s.kind == "step"]
    for s in steps:
        if s.kind in _HANDLER_FIELDS and s.status != StepStatus.NOT_STARTED:
            d[_HANDLER_FIELDS[s.kind]] = step_node(s)
    d["preconditions"] = []
    d["outputs"] = _outputs(steps)
    # dagloop addition: the spec this run used (DESIGN §3.10)
    d["revision"] = revision_document(run.revision_commit, run.revision_dirty, run.spec_yaml)
    return d


def _outputs(steps: list[StepRecord]) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in steps:
        if s.kind != "step" or not s.outputs:
            continue
        spec_out = s.spec.get("outputSpec") or {}
        for name, value in s.outputs.items():
            if spec_out.get("omit"):
                continue
            key = spec_out.get("key") or camel_key(name)
            out[key] = value
    return out


def outputs_document(store: Store, run: RunRecord) -> dict[str, Any]:
    """Dagu's outputs.json: ``{metadata: {...}, outputs: {camelKey: value}}``."""
    import json

    steps = store.list_steps(run.id)
    status = run.status
    return {
        "metadata": {
            "dagName": run.dag_name,
            "dagRunId": run.run_id,
            "attemptId": run.attempt_id,
            "status": status.label,
            "completedAt": rfc3339(run.finished_at),
            "params": json.dumps(list(run.params)),
        },
        "outputs": _outputs(steps),
    }


def is_final(status: RunStatus) -> bool:
    """Whether a run status is final (for callers that only hold the int)."""
    return status.is_final()
