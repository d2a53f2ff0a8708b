"""The state database's tables as SQLModel classes: the schema declared once, in Python.

`controller.store.schema` holds the DDL each dialect runs (with the totals triggers, which SQLModel
cannot express); these classes declare the same tables and columns for tools and readers:
Alembic's `target_metadata` (`controller/store/migrations/env.py`, so `alembic revision
--autogenerate` starts from them) and `tests/store/test_schema.py`, which checks that both
databases, migrated, have exactly these columns with this nullability. The store itself does
not import this module: SQLAlchemy's import would cost a runner more than its whole start-up.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Meta(SQLModel, table=True):
    """Key/value facts about the database (schema version, error totals, last pass)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class Run(SQLModel, table=True):
    """A DAG run (`controller.store.store.RunRecord`)."""

    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    dag_name: str
    run_id: str
    file: str = ""
    spec_yaml: str = ""
    queue: str = ""
    status: int
    trigger: str = "manual"
    params: str = "[]"
    scheduled_at: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 1
    attempt_id: str = ""
    pid: int | None = None
    pid_started: float | None = None
    host: str = ""
    heartbeat_at: float | None = None
    stop_requested_at: float | None = None
    error: str = ""
    log_file: str = ""
    parent_dag: str = ""
    parent_run_id: str = ""
    root_dag: str = ""
    root_run_id: str = ""
    notes: str = ""
    created_at: float
    updated_at: float
    dispatched_at: float | None = None
    worker_id: str = ""
    worker_selector: str = "{}"


class Step(SQLModel, table=True):
    """A step or handler of a run (`controller.store.store.StepRecord`)."""

    __tablename__ = "steps"
    id: int | None = Field(default=None, primary_key=True)
    run: int = Field(foreign_key="runs.id")
    position: int
    kind: str = "step"
    name: str
    spec: str = "{}"
    status: int = 0
    exit_code: int | None = None
    retry_count: int = 0
    done_count: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    retried_at: float | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    pgid: int | None = None
    outputs: str = "{}"
    children: str = "[]"


class Request(SQLModel, table=True):
    """A request written by the CLI for the controller."""

    __tablename__ = "requests"
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    dag_name: str
    run_id: str = ""
    args: str = "{}"
    created_at: float
    done_at: float | None = None
    result: str = ""


class Instance(SQLModel, table=True):
    """A controller instance (leader or standby)."""

    __tablename__ = "instances"
    id: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    status: str = "standby"
    started_at: float
    heartbeat_at: float


class RunTotal(SQLModel, table=True):
    """Monotonic totals of finished runs per (DAG, status), kept by triggers."""

    __tablename__ = "run_totals"
    dag_name: str = Field(primary_key=True)
    status: int = Field(primary_key=True)
    count: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    le_1: int = 0
    le_5: int = 0
    le_15: int = 0
    le_30: int = 0
    le_60: int = 0
    le_120: int = 0
    le_300: int = 0
    le_600: int = 0
    le_1800: int = 0
    le_3600: int = 0


class SkippedTick(SQLModel, table=True):
    """A start tick that did not run, once per (DAG, instant)."""

    __tablename__ = "skipped_ticks"
    dag_name: str = Field(primary_key=True)
    scheduled_at: float = Field(primary_key=True)
    reason: str = ""
    recorded_at: float


class SkippedTotal(SQLModel, table=True):
    """Skipped ticks ever recorded per DAG, kept by a trigger."""

    __tablename__ = "skipped_totals"
    dag_name: str = Field(primary_key=True)
    count: int = 0


class Worker(SQLModel, table=True):
    """A `dagloop worker` as it last reported itself."""

    __tablename__ = "workers"
    id: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    labels: str = "{}"
    max_active_runs: int = 0
    status: str = "active"
    started_at: float
    heartbeat_at: float


class LogBlob(SQLModel, table=True):
    """A finished log file shipped into the database by the worker that wrote it."""

    __tablename__ = "log_blobs"
    path: str = Field(primary_key=True)
    run: int = Field(foreign_key="runs.id")
    content: bytes
    truncated: int = 0
    created_at: float


METADATA = SQLModel.metadata
