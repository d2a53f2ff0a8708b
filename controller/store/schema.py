"""The state database's DDL: one version history, written for SQLite and for PostgreSQL.

The schema itself is declared once, in `controller.store.tables` (the SQLModel metadata); this
module is what runs it. Each schema version is one step per dialect, and
`tests/store/test_schema.py` holds the steps to the models: a database migrated by them (SQLite
by the fast path and by Alembic, PostgreSQL by Alembic) must show no difference from the
metadata in any column, type, nullability, default, index, unique constraint or foreign key
(`controller.store.drift`), and `METADATA.create_all` must make the same database. The
Alembic revisions in `controller/store/migrations/versions/` apply these steps; a new embedded
SQLite file gets them all at once without Alembic (see `Store`), so both paths give the same
file. A change of schema is a change of the models, a new step here and a new revision there,
never an edit of an old step: databases in the field were made by it.

The DDL is text because the hot path (`dagloop start` opening the store in well under 150 ms)
cannot import SQLAlchemy, and the totals triggers are dialect SQL anyway.
"""

from __future__ import annotations

import sqlite3

# The version a database made by this dagloop has (`meta['schema_version']`) and the Alembic
# revision it is stamped with; `STEPS[dialect][i]` takes a database from version i to i + 1.
SCHEMA_VERSION = 4
HEAD_REVISION = "0004"
REVISIONS = ("0001", "0002", "0003", "0004")

_SQLITE_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    dag_name TEXT NOT NULL,
    run_id TEXT NOT NULL,
    file TEXT NOT NULL DEFAULT '',          -- the DAG file the run was made from
    spec_yaml TEXT NOT NULL DEFAULT '',     -- snapshot of the DAG file text used by the run
    queue TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    trigger TEXT NOT NULL DEFAULT 'manual', -- manual | schedule | enqueue | retry | restart | sub
    params TEXT NOT NULL DEFAULT '[]',      -- JSON list of "NAME=value"
    scheduled_at REAL,                      -- the cron instant for scheduled runs (UTC epoch)
    queued_at REAL,
    started_at REAL,
    finished_at REAL,
    attempt INTEGER NOT NULL DEFAULT 1,
    attempt_id TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_started REAL,                       -- process start time, guards against PID reuse
    host TEXT NOT NULL DEFAULT '',
    heartbeat_at REAL,
    stop_requested_at REAL,
    error TEXT NOT NULL DEFAULT '',
    log_file TEXT NOT NULL DEFAULT '',
    parent_dag TEXT NOT NULL DEFAULT '',
    parent_run_id TEXT NOT NULL DEFAULT '',
    root_dag TEXT NOT NULL DEFAULT '',
    root_run_id TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',         -- e.g. mail delivery failures, never the status
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (dag_name, run_id)
);
-- A scheduled instant of a DAG is launched at most once, whoever races for it.
CREATE UNIQUE INDEX IF NOT EXISTS runs_schedule_once ON runs (dag_name, scheduled_at)
    WHERE scheduled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_dag_created ON runs (dag_name, created_at);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (queue, status);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,              -- definition order; handlers come after steps
    kind TEXT NOT NULL DEFAULT 'step',      -- step, or a handler: onInit, onSuccess, onExit, …
    name TEXT NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',        -- JSON of the step as run (Dagu's node.step)
    status INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    retry_count INTEGER NOT NULL DEFAULT 0,
    done_count INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    retried_at REAL,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    pgid INTEGER,                           -- process group of the running command
    outputs TEXT NOT NULL DEFAULT '{}',     -- JSON {VAR: value}
    children TEXT NOT NULL DEFAULT '[]',    -- JSON [{dagRunId, params}]
    UNIQUE (run, kind, name)
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                     -- stop | retry | restart | dequeue
    dag_name TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    done_at REAL,
    result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_open ON requests (done_at);
-- Controller (scheduler) instances, for /api/v2/services/scheduler; written by `dagloop scheduler`.
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'standby', -- standby | active | stopped
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
-- The loop reads the scheduled instants of the last minutes on every pass.
CREATE INDEX IF NOT EXISTS runs_scheduled ON runs (scheduled_at) WHERE scheduled_at IS NOT NULL;
-- Retention scans finished runs by age.
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
-- Monotonic totals of finished runs for /metrics, kept by triggers so that they survive history
-- pruning (histRetentionDays 0 deletes a run right after it ends) and need no writer's help.
-- One row per (DAG, final status); le_* are cumulative duration-bucket counts (Dagu's buckets).
CREATE TABLE IF NOT EXISTS run_totals (
    dag_name TEXT NOT NULL,
    status INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    duration_count INTEGER NOT NULL DEFAULT 0,
    duration_sum REAL NOT NULL DEFAULT 0,
    le_1 INTEGER NOT NULL DEFAULT 0, le_5 INTEGER NOT NULL DEFAULT 0,
    le_15 INTEGER NOT NULL DEFAULT 0, le_30 INTEGER NOT NULL DEFAULT 0,
    le_60 INTEGER NOT NULL DEFAULT 0, le_120 INTEGER NOT NULL DEFAULT 0,
    le_300 INTEGER NOT NULL DEFAULT 0, le_600 INTEGER NOT NULL DEFAULT 0,
    le_1800 INTEGER NOT NULL DEFAULT 0, le_3600 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dag_name, status)
);
CREATE TRIGGER IF NOT EXISTS runs_finished_update AFTER UPDATE OF status ON runs
WHEN NEW.status IN (2, 3, 4, 6, 8) AND OLD.status NOT IN (2, 3, 4, 6, 8)
BEGIN
    INSERT INTO run_totals (dag_name, status) VALUES (NEW.dag_name, NEW.status)
        ON CONFLICT (dag_name, status) DO NOTHING;
    UPDATE run_totals SET count = count + 1,
        duration_count = duration_count + (NEW.finished_at - NEW.started_at IS NOT NULL),
        duration_sum = duration_sum + IFNULL(NEW.finished_at - NEW.started_at, 0),
        le_1 = le_1 + IFNULL(NEW.finished_at - NEW.started_at <= 1, 0),
        le_5 = le_5 + IFNULL(NEW.finished_at - NEW.started_at <= 5, 0),
        le_15 = le_15 + IFNULL(NEW.finished_at - NEW.started_at <= 15, 0),
        le_30 = le_30 + IFNULL(NEW.finished_at - NEW.started_at <= 30, 0),
        le_60 = le_60 + IFNULL(NEW.finished_at - NEW.started_at <= 60, 0),
        le_120 = le_120 + IFNULL(NEW.finished_at - NEW.started_at <= 120, 0),
        le_300 = le_300 + IFNULL(NEW.finished_at - NEW.started_at <= 300, 0),
        le_600 = le_600 + IFNULL(NEW.finished_at - NEW.started_at <= 600, 0),
        le_1800 = le_1800 + IFNULL(NEW.finished_at - NEW.started_at <= 1800, 0),
        le_3600 = le_3600 + IFNULL(NEW.finished_at - NEW.started_at <= 3600, 0)
    WHERE dag_name = NEW.dag_name AND status = NEW.status;
END;
CREATE TRIGGER IF NOT EXISTS runs_finished_insert AFTER INSERT ON runs
WHEN NEW.status IN (2, 3, 4, 6, 8)
BEGIN
    INSERT INTO run_totals (dag_name, status, count) VALUES (NEW.dag_name, NEW.status, 1)
        ON CONFLICT (dag_name, status) DO UPDATE SET count = count + 1;
END;
-- Start ticks that did not run (overlapPolicy, skipIfSuccessful, superseded, controller down),
-- one row per (DAG, instant) whoever records it; skipped_totals counts them for
-- dagloop_missed_runs_total and survives pruning of old rows.
CREATE TABLE IF NOT EXISTS skipped_ticks (
    dag_name TEXT NOT NULL,
    scheduled_at REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    recorded_at REAL NOT NULL,
    PRIMARY KEY (dag_name, scheduled_at)
);
CREATE INDEX IF NOT EXISTS skipped_ticks_at ON skipped_ticks (scheduled_at);
CREATE TABLE IF NOT EXISTS skipped_totals (
    dag_name TEXT PRIMARY KEY,
    count INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS skipped_ticks_count AFTER INSERT ON skipped_ticks
BEGIN
    INSERT INTO skipped_totals (dag_name, count) VALUES (NEW.dag_name, 1)
        ON CONFLICT (dag_name) DO UPDATE SET count = count + 1;
END;
"""

# Distributed execution (issue 9): runs handed to workers, the workers, and finished logs
# shipped into the database so that any node's API can serve them.
_SQLITE_2 = """
ALTER TABLE runs ADD COLUMN dispatched_at REAL;         -- the leader started it via a worker
ALTER TABLE runs ADD COLUMN worker_id TEXT NOT NULL DEFAULT '';   -- the worker that claimed it
ALTER TABLE runs ADD COLUMN worker_selector TEXT NOT NULL DEFAULT '{}';  -- JSON labels wanted
CREATE INDEX IF NOT EXISTS runs_dispatch ON runs (status, worker_id, queued_at)
    WHERE dispatched_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    max_active_runs INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',  -- active | stopped
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS log_blobs (
    path TEXT PRIMARY KEY,                  -- the log file's path on the host that wrote it
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    content BLOB NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0,   -- bytes cut from the head (only the tail is kept)
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS log_blobs_run ON log_blobs (run);
"""

# The API at scale (issue 16): runs listed newest first, with or without a status, and a run id
# looked up across DAGs, each on an index. (status, created_at) serves every query the status
# index did, so it replaces it.
_SQLITE_4 = """
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_status_created ON runs (status, created_at);
DROP INDEX IF EXISTS runs_status;
CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id);
"""

_POSTGRES_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    dag_name TEXT NOT NULL,
    run_id TEXT NOT NULL,
    file TEXT NOT NULL DEFAULT '',
    spec_yaml TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    trigger TEXT NOT NULL DEFAULT 'manual',
    params TEXT NOT NULL DEFAULT '[]',
    scheduled_at DOUBLE PRECISION,
    queued_at DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    attempt INTEGER NOT NULL DEFAULT 1,
    attempt_id TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_started DOUBLE PRECISION,
    host TEXT NOT NULL DEFAULT '',
    heartbeat_at DOUBLE PRECISION,
    stop_requested_at DOUBLE PRECISION,
    error TEXT NOT NULL DEFAULT '',
    log_file TEXT NOT NULL DEFAULT '',
    parent_dag TEXT NOT NULL DEFAULT '',
    parent_run_id TEXT NOT NULL DEFAULT '',
    root_dag TEXT NOT NULL DEFAULT '',
    root_run_id TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (dag_name, run_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_schedule_once ON runs (dag_name, scheduled_at)
    WHERE scheduled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_dag_created ON runs (dag_name, created_at);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (queue, status);
CREATE TABLE IF NOT EXISTS steps (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'step',
    name TEXT NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    status INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    retry_count INTEGER NOT NULL DEFAULT 0,
    done_count INTEGER NOT NULL DEFAULT 0,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    retried_at DOUBLE PRECISION,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    pgid INTEGER,
    outputs TEXT NOT NULL DEFAULT '{}',
    children TEXT NOT NULL DEFAULT '[]',
    UNIQUE (run, kind, name)
);
CREATE TABLE IF NOT EXISTS requests (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    dag_name TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    done_at DOUBLE PRECISION,
    result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_open ON requests (done_at);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'standby',
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_scheduled ON runs (scheduled_at) WHERE scheduled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS run_totals (
    dag_name TEXT NOT NULL,
    status INTEGER NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    duration_count BIGINT NOT NULL DEFAULT 0,
    duration_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    le_1 BIGINT NOT NULL DEFAULT 0, le_5 BIGINT NOT NULL DEFAULT 0,
    le_15 BIGINT NOT NULL DEFAULT 0, le_30 BIGINT NOT NULL DEFAULT 0,
    le_60 BIGINT NOT NULL DEFAULT 0, le_120 BIGINT NOT NULL DEFAULT 0,
    le_300 BIGINT NOT NULL DEFAULT 0, le_600 BIGINT NOT NULL DEFAULT 0,
    le_1800 BIGINT NOT NULL DEFAULT 0, le_3600 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dag_name, status)
);
CREATE OR REPLACE FUNCTION dagloop_count_finished() RETURNS trigger AS $$
DECLARE
    d DOUBLE PRECISION := NEW.finished_at - NEW.started_at;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IN (2, 3, 4, 6, 8) THEN
        RETURN NEW;
    END IF;
    INSERT INTO run_totals (dag_name, status) VALUES (NEW.dag_name, NEW.status)
        ON CONFLICT (dag_name, status) DO NOTHING;
    IF TG_OP = 'INSERT' THEN
        UPDATE run_totals SET count = count + 1
        WHERE dag_name = NEW.dag_name AND status = NEW.status;
        RETURN NEW;
    END IF;
    UPDATE run_totals SET count = count + 1,
        duration_count = duration_count + (d IS NOT NULL)::int,
        duration_sum = duration_sum + COALESCE(d, 0),
        le_1 = le_1 + COALESCE((d <= 1)::int, 0),
        le_5 = le_5 + COALESCE((d <= 5)::int, 0),
        le_15 = le_15 + COALESCE((d <= 15)::int, 0),
        le_30 = le_30 + COALESCE((d <= 30)::int, 0),
        le_60 = le_60 + COALESCE((d <= 60)::int, 0),
        le_120 = le_120 + COALESCE((d <= 120)::int, 0),
        le_300 = le_300 + COALESCE((d <= 300)::int, 0),
        le_600 = le_600 + COALESCE((d <= 600)::int, 0),
        le_1800 = le_1800 + COALESCE((d <= 1800)::int, 0),
        le_3600 = le_3600 + COALESCE((d <= 3600)::int, 0)
    WHERE dag_name = NEW.dag_name AND status = NEW.status;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER runs_finished_update AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.status IN (2, 3, 4, 6, 8)) EXECUTE FUNCTION dagloop_count_finished();
CREATE TRIGGER runs_finished_insert AFTER INSERT ON runs
    FOR EACH ROW WHEN (NEW.status IN (2, 3, 4, 6, 8)) EXECUTE FUNCTION dagloop_count_finished();
CREATE TABLE IF NOT EXISTS skipped_ticks (
    dag_name TEXT NOT NULL,
    scheduled_at DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    recorded_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dag_name, scheduled_at)
);
CREATE INDEX IF NOT EXISTS skipped_ticks_at ON skipped_ticks (scheduled_at);
CREATE TABLE IF NOT EXISTS skipped_totals (
    dag_name TEXT PRIMARY KEY,
    count BIGINT NOT NULL DEFAULT 0
);
CREATE OR REPLACE FUNCTION dagloop_count_skipped() RETURNS trigger AS $$
BEGIN
    INSERT INTO skipped_totals (dag_name, count) VALUES (NEW.dag_name, 1)
        ON CONFLICT (dag_name) DO UPDATE SET count = skipped_totals.count + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER skipped_ticks_count AFTER INSERT ON skipped_ticks
    FOR EACH ROW EXECUTE FUNCTION dagloop_count_skipped();
"""

_POSTGRES_2 = """
ALTER TABLE runs ADD COLUMN dispatched_at DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN worker_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN worker_selector TEXT NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS runs_dispatch ON runs (status, worker_id, queued_at)
    WHERE dispatched_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    max_active_runs INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS log_blobs (
    path TEXT PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    content BYTEA NOT NULL,
    truncated BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS log_blobs_run ON log_blobs (run);
"""

# The revision of every run (issue 18): the git commit its spec came from, and whether the
# file differed from it. The digest is the sha256 of `spec_yaml`, so it needs no column.
_SQLITE_3 = """
ALTER TABLE runs ADD COLUMN revision_commit TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN revision_dirty INTEGER NOT NULL DEFAULT 0;
"""

_POSTGRES_3 = _SQLITE_3

_POSTGRES_4 = _SQLITE_4  # the same statements in both dialects

STEPS: dict[str, tuple[str, ...]] = {
    "sqlite": (_SQLITE_1, _SQLITE_2, _SQLITE_3, _SQLITE_4),
    "postgresql": (_POSTGRES_1, _POSTGRES_2, _POSTGRES_3, _POSTGRES_4),
}


def statements(script: str) -> list[str]:
    """The statements of an SQL script, each complete (trigger bodies hold `;` too)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def version_problem(version: int | None) -> str:
    """Why a database at schema `version` (None: no schema) cannot be used by this dagloop, and
    what fixes it; for a version other than `SCHEMA_VERSION`."""
    if version is None:
        return "the database has no dagloop schema; run `dagloop migrate` first"
    if version < SCHEMA_VERSION:
        return (
            f"schema version {version} is older than this dagloop's ({SCHEMA_VERSION}); "
            "run `dagloop migrate` first"
        )
    return (
        f"schema version {version} is newer than this dagloop's ({SCHEMA_VERSION}); upgrade dagloop"
    )


def sqlite_creation() -> list[str]:
    """The statements that make a new embedded database at the current version in one go:
    every SQLite step, then the Alembic stamp (so that `dagloop migrate` knows where it stands)
    and the version every process checks."""
    out = [s for step in STEPS["sqlite"] for s in statements(step)]
    return [
        *out,
        "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        f"INSERT INTO alembic_version (version_num) VALUES ('{HEAD_REVISION}')",
        f"INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",
    ]
