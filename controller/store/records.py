"""The store's vocabulary: the rows it returns (`*Record`), the run it inserts (`NewRun`), and
the errors its verbs raise (`NotFound`, `Conflict`, `LimitReached`, `StoreError`).

Plain frozen dataclasses, no I/O: every layer above the store (the runner, the loop, the views,
the API) imports them, and the runner's start path must stay cheap. Their fields mirror the
columns of `controller.store.tables` (the schema), in the same order;
`tests/store/test_schema.py` fails on any difference. The JSON text columns (`params`, `spec`,
`outputs`, `children`, `args`, `labels`, `worker_selector`) are decoded here, by
`run_from_row` and friends, and encoded by `run_value` and `step_value`, called by
`controller.store.store` and `controller.store.updates` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from model.status import RunStatus, StepStatus

# Upper bounds (seconds) of the run-duration buckets kept in `run_totals` (columns le_*).
DURATION_BUCKETS_SECONDS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class NotFound(LookupError):
    """The asked-for row does not exist."""


class LimitReached(RuntimeError):
    """A new run was refused: its DAG already has `maxActiveRuns` active runs."""


class StoreError(RuntimeError):
    """The database cannot be used (corrupt, wrong schema, read-only, disk full, unreachable)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached for now (a PostgreSQL restart or failover, a cut
    network, SQLite's write lock held past the timeout): transient. Nothing of the refused
    transaction was kept, so the same write may be sent again once it is back."""


class Conflict(RuntimeError):
    """A new row collides with an existing one (the run id, or the scheduled instant of the
    DAG, is taken): a repeated create is refused instead of duplicated."""


@dataclass(frozen=True)
class RunRecord:
    """A run row."""

    id: int
    dag_name: str
    run_id: str
    file: str
    spec_yaml: str
    queue: str
    status: RunStatus
    trigger: str
    params: list[str]
    scheduled_at: float | None
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    attempt: int
    attempt_id: str
    pid: int | None
    pid_started: float | None
    host: str
    heartbeat_at: float | None
    stop_requested_at: float | None
    error: str
    log_file: str
    parent_dag: str
    parent_run_id: str
    root_dag: str
    root_run_id: str
    notes: str
    created_at: float
    updated_at: float
    dispatched_at: float | None = None  # handed to workers by the leader (None: run locally)
    worker_id: str = ""  # the worker that claimed it
    worker_selector: dict[str, str] | None = None  # labels a worker must have
    revision_commit: str = ""  # git commit of the spec ('' = not from a git work tree)
    revision_dirty: bool = False  # the file differed from that commit


@dataclass(frozen=True)
class NewRun:
    """A run to insert (`Store.record_runs`; `record_run` takes the same as keywords)."""

    dag_name: str
    run_id: str
    status: RunStatus
    file: str = ""
    spec_yaml: str = ""  # snapshot of the DAG file text
    queue: str = ""  # '' = the DAG's name
    trigger: str = "manual"
    params: tuple[str, ...] = ()
    scheduled_at: float | None = None
    queued_at: float | None = None  # in the future: held back until then (restartWaitSec)
    parent_dag: str = ""
    parent_run_id: str = ""
    root_dag: str = ""  # '' = this run
    root_run_id: str = ""
    revision_commit: str = ""
    revision_dirty: bool = False


@dataclass(frozen=True)
class WorkerRecord:
    """A worker (`dagloop worker`) as it last reported itself."""

    id: str
    host: str
    pid: int
    labels: dict[str, str]
    max_active_runs: int
    status: str  # active | stopped
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True)
class StepRecord:
    """A step (or handler) row of a run."""

    id: int
    run: int
    position: int
    kind: str
    name: str
    spec: dict[str, Any]
    status: StepStatus
    exit_code: int | None
    retry_count: int
    done_count: int
    started_at: float | None
    finished_at: float | None
    retried_at: float | None
    stdout: str
    stderr: str
    error: str
    pgid: int | None
    outputs: dict[str, str]
    children: list[dict[str, Any]]


@dataclass(frozen=True)
class RequestRecord:
    """A request written by the CLI for the controller."""

    id: int
    kind: str
    dag_name: str
    run_id: str
    args: dict[str, Any]
    created_at: float
    done_at: float | None
    result: str


@dataclass(frozen=True)
class InstanceRecord:
    """A controller instance (`dagloop scheduler`), for /api/v2/services/scheduler."""

    id: str
    host: str
    pid: int
    status: str  # standby | active | stopped
    started_at: float
    heartbeat_at: float


RUN_COLUMNS = tuple(f.name for f in fields(RunRecord))
STEP_COLUMNS = tuple(f.name for f in fields(StepRecord))


# Decoding is on the API's hot path (a page of runs, a run's steps): the columns' defaults are
# decoded without the JSON parser, and statuses looked up rather than made by the enum.
_RUN_STATUSES = {int(s): s for s in RunStatus}
_STEP_STATUSES = {int(s): s for s in StepStatus}


def _json_list(text: str) -> Any:
    return [] if text == "[]" else json.loads(text)


def _json_object(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


def _fields(row: Any) -> dict[str, Any]:
    """A sqlite3.Row or `PgRow` as a dict: `dict(row)` looks every name up again (~4x slower)."""
    return dict(zip(row.keys(), row, strict=True))


def run_from_row(row: Any) -> RunRecord:
    """A `runs` row (sqlite3.Row or `PgRow`) as a record, its JSON columns decoded."""
    d = _fields(row)
    d["status"] = _RUN_STATUSES[d["status"]]
    d["params"] = _json_list(d["params"])
    d["worker_selector"] = _json_object(d["worker_selector"]) or None
    d["revision_dirty"] = bool(d["revision_dirty"])
    return RunRecord(**d)


def step_from_row(row: Any) -> StepRecord:
    """A `steps` row (sqlite3.Row or `PgRow`) as a record, its JSON columns decoded."""
    return _step(_fields(row))


def step_from_values(values: tuple[Any, ...]) -> StepRecord:
    """A step row given as a tuple of `STEP_COLUMNS` (`Store.list_step_rows`) as a record."""
    return _step(dict(zip(STEP_COLUMNS, values, strict=True)))


def _step(d: dict[str, Any]) -> StepRecord:
    d["status"] = _STEP_STATUSES[d["status"]]
    d["spec"] = _json_object(d["spec"])
    d["outputs"] = _json_object(d["outputs"])
    d["children"] = _json_list(d["children"])
    return StepRecord(**d)


def request_from_row(row: Any) -> RequestRecord:
    """A `requests` row as a record."""
    d = _fields(row)
    d["args"] = json.loads(d["args"])
    return RequestRecord(**d)


def worker_from_row(row: Any) -> WorkerRecord:
    """A `workers` row as a record."""
    d = _fields(row)
    d["labels"] = json.loads(d["labels"])
    return WorkerRecord(**d)


def run_value(key: str, value: Any) -> Any:
    """A run column's value as stored (JSON text for the structured ones, ints for statuses)."""
    if key == "params":
        return json.dumps(list(value))
    if key == "worker_selector":
        return json.dumps(value or {})
    return int(value) if isinstance(value, RunStatus) else value


def step_value(key: str, value: Any) -> Any:
    """A step column's value as stored (JSON text for the structured ones, ints for statuses)."""
    if key in ("spec", "outputs", "children"):
        return json.dumps(value)
    if isinstance(value, StepStatus):
        return int(value)
    return value
