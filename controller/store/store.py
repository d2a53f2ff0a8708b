"""The store: the only code that talks SQL. Runs, steps, requests, controller instances and
workers — in one SQLite file (WAL, the embedded default) or in PostgreSQL (`DAGU_DATABASE_URL`,
for several hosts).

Every state change is one short transaction, so a process killed at any instant leaves a
consistent record. Verbs follow one naming scheme: `get_*` (one row or `NotFound`), `list_*`,
`record_*` (a transition), `claim_*`, `prune_*`.

One SQL text serves both databases: SQLite's dialect where both agree (`ON CONFLICT`,
`RETURNING`, partial indexes), written with `?` parameters that `controller.store.pg` rewrites for
psycopg. Why stdlib `sqlite3` and not SQLModel here: `dagloop start` must run a one-step DAG in
under 150 ms as a whole process, and importing SQLAlchemy alone costs ~190 ms on this machine.
The schema is declared in `controller.store.tables` and run as the DDL of `controller.store.schema`
(checked against each other by the tests); Alembic (`dagloop migrate`) upgrades an existing
database, and every process refuses a database whose schema is older or newer than its own.
The rows it returns and the errors it raises are in `controller.store.records`, the filter of
its runs listings in `controller.store.filters`, the UPDATEs its writes of run and step
columns send in `controller.store.updates`; the SQLite connection and its write
transaction in `controller.store.connection`, PostgreSQL's in `controller.store.pg`; opening
it and sending a call again through a database outage in `controller.store.retry`.

Writers: SQLite serialises them (`BEGIN IMMEDIATE`), and dagloop's own writers first queue for
their turn in the kernel (`flock` on `<db>-writers`, see `controller.store.connection`); on
PostgreSQL the few check-then-write transactions (`record_run` with a `maxActiveRuns` check,
`claim_dispatched_runs`) take a transaction-level advisory lock, so the same invariants hold
across hosts.

Callers: the runner (writes its run and steps), the controller loop (claims, marks lost,
prunes), the CLI (requests) and the API (reads, opening the file read-only).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.store.connection import SqliteSession
from controller.store.filters import ALL_RUNS, RunFilter
from controller.store.records import (
    DURATION_BUCKETS_SECONDS,
    STEP_COLUMNS,
    Conflict,
    InstanceRecord,
    LimitReached,
    NewRun,
    NotFound,
    RequestRecord,
    RunRecord,
    StepRecord,
    StoreError,
    StoreUnavailable,
    WorkerRecord,
    request_from_row,
    run_from_row,
    step_from_values,
    step_value,
    worker_from_row,
)
from controller.store.schema import SCHEMA_VERSION, sqlite_creation, version_problem
from controller.store.updates import run_assignments, run_update, step_updates
from model.status import RunStatus

if TYPE_CHECKING:
    from controller.store.pg import PgConnection


class Store:
    """A connection to the state database. Not shared between threads.

    `location` is the SQLite file's path or a PostgreSQL URL (`postgresql+psycopg://…`);
    `controller.store.retry.open_store` picks it from the settings (and waits for it). `role`
    names the process in PostgreSQL's `pg_stat_activity` (controller, runner, worker, api,
    cli). `check_schema=False` (for `dagloop migrate` only) opens a database of another
    schema version.
    """

    def __init__(
        self,
        location: Path | str,
        *,
        readonly: bool = False,
        timeout_seconds: float = 30.0,
        role: str = "cli",
        check_schema: bool = True,
    ):
        self.readonly = readonly
        self._checks_schema = check_schema
        self._session: SqliteSession | PgConnection
        self._db: Any  # what SQL is sent to: sqlite3.Connection or PgConnection
        if isinstance(location, str) and location.startswith("postgres"):
            self._open_postgres(location, readonly, timeout_seconds, role)
            return
        path = Path(location)
        self.dialect = "sqlite"
        self.path: Path | None = path
        self.where = str(path)
        session = SqliteSession(path, readonly=readonly, timeout_seconds=timeout_seconds)
        self._session, self._db = session, session.db
        try:
            if readonly:
                self._check_schema()
            else:
                session.prepare(self._check_schema)
        except sqlite3.DatabaseError as exc:
            raise session.open_error(exc) from None

    def _open_postgres(self, url: str, readonly: bool, timeout_seconds: float, role: str) -> None:
        import psycopg  # only PostgreSQL deployments pay for the import

        from controller.store.pg import PgConnection, application_name, redact_url

        self.dialect = "postgresql"
        self.path = None
        self.where = redact_url(url)
        try:
            self._session = self._db = PgConnection(
                url,
                readonly=readonly,
                timeout_seconds=timeout_seconds,
                application_name=application_name(role),
            )
            self._check_schema()
        except psycopg.OperationalError as exc:  # the server is away: transient
            text = " ".join(str(exc).split())
            raise StoreUnavailable(
                f"{self.where}: the state database is unreachable: {text}"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot open the state database: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        self._session.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int | None:
        """The database's schema version (`meta['schema_version']`); None when it has none."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:  # a new SQLite file: no meta table yet
            return None
        except Exception as exc:  # PostgreSQL: "relation meta does not exist"
            if type(exc).__name__ != "UndefinedTable":
                raise
            return None
        return None if row is None else int(row[0])

    def _check_schema(self) -> None:
        # Every process opens the store (a runner once per run): one indexed read when the
        # database is at this dagloop's version.
        version = self.schema_version()
        if version == SCHEMA_VERSION or not self._checks_schema:
            return
        if version is None and self.dialect == "sqlite" and not self.readonly:
            self._create_sqlite()
            return
        raise StoreError(f"{self.where}: {version_problem(version)}")

    def _create_sqlite(self) -> None:
        """A new embedded database: every schema step at once, in one transaction (so two
        processes creating the same file cannot both run a step), stamped as migrated."""
        with self.transaction() as db:
            if self.schema_version() is not None:
                return  # another process made it while we waited for the write lock
            for statement in sqlite_creation():
                db.execute(statement)

    def transaction(self) -> AbstractContextManager[Any]:
        """One atomic write (`with store.transaction() as db:`): BEGIN … COMMIT, ROLLBACK on
        error. A write the file system refused (full disk, I/O error), or a PostgreSQL
        session lost mid-transaction, raises `StoreError` naming the database and the
        reason, after the rollback: nothing of the transaction is kept."""
        return self._session.transaction()

    def _lock(self, db: Any, key: str) -> None:
        """Serialise check-then-write transactions on PostgreSQL (SQLite's writer is already
        alone): a transaction-level advisory lock on `key`, released at COMMIT/ROLLBACK."""
        if self.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"dagloop:{key}",))

    def _wake(self, db: Any) -> None:
        """Wake the leader of another host (PostgreSQL NOTIFY, delivered at COMMIT): a run
        was queued or finished, so a slot or a start may be waiting. SQLite homes have the
        doorbell file (`controller.loop.watcher`) for this."""
        if self.dialect == "postgresql":
            db.execute("SELECT pg_notify('dagloop_wake', '')")

    def check_integrity(self) -> list[str]:
        """`PRAGMA integrity_check` problems (empty when the file is sound); PostgreSQL
        guards its own files, so nothing to report there."""
        if self.dialect == "postgresql":
            return []
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return [r[0] for r in rows if r[0] != "ok"]

    # ------------------------------------------------------------------ runs

    def record_run(
        self,
        *,
        dag_name: str,
        run_id: str,
        status: RunStatus,
        file: str = "",
        spec_yaml: str = "",
        queue: str = "",
        trigger: str = "manual",
        params: Sequence[str] = (),
        scheduled_at: float | None = None,
        parent_dag: str = "",
        parent_run_id: str = "",
        root_dag: str = "",
        root_run_id: str = "",
        now: float | None = None,
        max_active: int | None = None,
        queued_at: float | None = None,
        revision_commit: str = "",
        revision_dirty: bool = False,
    ) -> RunRecord:
        """Insert a new run. Raises `Conflict` if the run id or the scheduled instant of this
        DAG is taken: a repeated create collides instead of duplicating.

        `queued_at` in the future holds a queued run back until then (restartWaitSec).
        With `max_active` (the DAG's maxActiveRuns; negative = unlimited), raises
        `LimitReached` if the DAG already has that many running top-level runs — checked
        inside the same write transaction, so concurrent starts cannot both pass.
        """
        new = NewRun(
            dag_name=dag_name,
            run_id=run_id,
            status=status,
            file=file,
            spec_yaml=spec_yaml,
            queue=queue,
            trigger=trigger,
            params=tuple(params),
            scheduled_at=scheduled_at,
            queued_at=queued_at,
            parent_dag=parent_dag,
            parent_run_id=parent_run_id,
            root_dag=root_dag,
            root_run_id=root_run_id,
            revision_commit=revision_commit,
            revision_dirty=revision_dirty,
        )
        now = time.time() if now is None else now
        with self.transaction() as db:
            if max_active is not None and max_active >= 0:
                self._lock(db, f"dag:{dag_name}")
                (active,) = db.execute(
                    "SELECT COUNT(*) FROM runs WHERE dag_name=? AND status IN (?, ?) "
                    "AND parent_run_id=''",
                    (dag_name, int(RunStatus.RUNNING), int(RunStatus.WAITING)),
                ).fetchone()
                limit = max(max_active, 1)
                if active >= limit:
                    raise LimitReached(
                        f"{dag_name} has {active} active run(s) (maxActiveRuns {limit})"
                    )
            run = self._insert_run(db, new, now)
            if run is None:
                raise Conflict(f"run {run_id!r} of {dag_name!r}: the run id or instant is taken")
            if status == RunStatus.QUEUED:
                self._wake(db)
        return run

    def record_runs(
        self, new: Sequence[NewRun], *, now: float | None = None
    ) -> list[RunRecord | None]:
        """Insert `new` in one commit (the runs of one control-loop pass: fifty one-row
        commits at a minute boundary kept its runners waiting); per run its record, or None
        where its run id or scheduled instant was taken already (as `record_run`'s
        `Conflict`), without failing the others."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            out = [self._insert_run(db, n, now) for n in new]
            if any(r is not None and r.status == RunStatus.QUEUED for r in out):
                self._wake(db)
        return out

    def _insert_run(self, db: Any, new: NewRun, now: float) -> RunRecord | None:
        """INSERT one run in the caller's transaction; None if a unique key is taken."""
        row = db.execute(
            """INSERT INTO runs (dag_name, run_id, file, spec_yaml, queue, status, trigger,
               params, scheduled_at, queued_at, parent_dag, parent_run_id, root_dag,
               root_run_id, created_at, updated_at, revision_commit, revision_dirty)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING RETURNING *""",
            (
                new.dag_name,
                new.run_id,
                new.file,
                new.spec_yaml,
                new.queue or new.dag_name,
                int(new.status),
                new.trigger,
                json.dumps(list(new.params)),
                new.scheduled_at,
                new.queued_at or (now if new.status == RunStatus.QUEUED else None),
                new.parent_dag,
                new.parent_run_id,
                new.root_dag or new.dag_name,
                new.root_run_id or new.run_id,
                now,
                now,
                new.revision_commit,
                int(new.revision_dirty),
            ),
        ).fetchone()
        return None if row is None else run_from_row(row)

    def update_run(self, run: int, **fields: Any) -> None:
        """Set columns of a run in one commit (`status` may be a RunStatus)."""
        if fields:
            self.update_steps({}, run=run, run_fields=fields)

    def _update_run_in(self, db: Any, run: int, fields: Mapping[str, Any]) -> None:
        """UPDATE one run's columns in the caller's transaction (wakes the leader when the
        run ends)."""
        fields = {"updated_at": time.time(), **fields}
        db.execute(*run_update(run, fields))
        status = fields.get("status")
        if status is not None and RunStatus(status).is_final():
            self._wake(db)

    def claim_queued_run(
        self, run: int, *, steps: Sequence[Mapping[str, Any]] = (), **fields: Any
    ) -> tuple[RunRecord, list[int]] | None:
        """QUEUED → RUNNING (plus `fields`), and its step rows `steps` inserted, in one
        commit, only if the run is still queued; the claimed run as recorded and the ids of
        the step rows (as `record_steps`).

        None when someone else claimed it first or it left the queue (runner contract).
        """
        cols, values = run_assignments({"updated_at": time.time(), **fields})
        with self.transaction() as db:
            row = db.execute(
                f"UPDATE runs SET status=?, {', '.join(cols)} WHERE id=? AND status=? RETURNING *",
                [int(RunStatus.RUNNING), *values, run, int(RunStatus.QUEUED)],
            ).fetchone()
            if row is None:
                return None
            ids = self._insert_steps(db, run, steps)
        return run_from_row(row), ids

    def get_run_by_id(self, run: int) -> RunRecord:
        """The run with row id `run`."""
        row = self._db.execute("SELECT * FROM runs WHERE id=?", (run,)).fetchone()
        if row is None:
            raise NotFound(f"run #{run}")
        return run_from_row(row)

    def get_run(self, dag_name: str, run_id: str) -> RunRecord:
        """The run `run_id` of `dag_name`; `latest` means the most recently created one."""
        if run_id == "latest":
            row = self._db.execute(
                "SELECT * FROM runs WHERE dag_name=? ORDER BY created_at DESC, id DESC LIMIT 1",
                (dag_name,),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT * FROM runs WHERE dag_name=? AND run_id=?", (dag_name, run_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r} of DAG {dag_name!r}")
        return run_from_row(row)

    def list_runs(
        self, where: RunFilter = ALL_RUNS, *, limit: int = 1000, offset: int = 0
    ) -> list[RunRecord]:
        """Runs that match `where`, newest first; `limit` of them after skipping `offset`.

        The page is chosen on an index alone (`runs_created`, `runs_status_created`,
        `runs_dag_created`, `runs_run_id`), and only its rows are read whole: a deep page
        skips index entries, not table rows."""
        clause, args = where.sql()
        sql = (
            f"SELECT * FROM runs WHERE id IN (SELECT id FROM runs{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?) ORDER BY created_at DESC, id DESC"
        )
        return [run_from_row(r) for r in self._db.execute(sql, [*args, limit, offset])]

    def count_runs(self, where: RunFilter = ALL_RUNS) -> int:
        """How many runs `list_runs` pages through with the same filter (index-only)."""
        clause, args = where.sql()
        (count,) = self._db.execute(f"SELECT COUNT(*) FROM runs{clause}", args).fetchone()
        return int(count)

    def list_active_runs(self) -> list[RunRecord]:
        """Running, queued and waiting runs, oldest first (FIFO for queues)."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE status IN (?,?,?) ORDER BY created_at, id",
            (int(RunStatus.RUNNING), int(RunStatus.QUEUED), int(RunStatus.WAITING)),
        )
        return [run_from_row(r) for r in rows]

    def delete_run(self, run: int) -> None:
        """Delete a run and its steps (the caller removes its log files)."""
        with self.transaction() as db:
            db.execute("DELETE FROM steps WHERE run=?", (run,))
            db.execute("DELETE FROM log_blobs WHERE run=?", (run,))
            db.execute("DELETE FROM runs WHERE id=?", (run,))

    def count_runs_by_status(self, statuses: Sequence[RunStatus] = ()) -> dict[RunStatus, int]:
        """Number of runs now in each status (only `statuses` when given); absent ones are 0."""
        sql = "SELECT status, COUNT(*) FROM runs"
        args: list[int] = [int(s) for s in statuses]
        if args:
            sql += f" WHERE status IN ({','.join('?' * len(args))})"
        counts = dict.fromkeys(statuses, 0)
        for status, n in self._db.execute(sql + " GROUP BY status", args):
            counts[RunStatus(status)] = n
        return counts

    def change_counter(self) -> int | None:
        """SQLite's `PRAGMA data_version` of this connection: it changes whenever another
        connection commits, so an unchanged value means nothing was written since it was last
        read (the API's connections never write). None on PostgreSQL, which has no such
        counter."""
        if self.dialect == "postgresql":
            return None
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def list_run_totals(self) -> list[dict[str, Any]]:
        """Finished-run totals per (DAG, final status), monotonic: they survive pruning.

        Each dict: `dag_name`, `status` (RunStatus), `count`, `duration_count`,
        `duration_sum` and `buckets` (cumulative counts per `DURATION_BUCKETS_SECONDS`).
        """
        rows = self._db.execute("SELECT * FROM run_totals ORDER BY dag_name, status")
        out = []
        for r in rows:
            d = dict(r)
            out.append(
                {
                    "dag_name": d["dag_name"],
                    "status": RunStatus(d["status"]),
                    "count": d["count"],
                    "duration_count": d["duration_count"],
                    "duration_sum": d["duration_sum"],
                    "buckets": [d[f"le_{b}"] for b in DURATION_BUCKETS_SECONDS],
                }
            )
        return out

    def list_sub_runs(self, parent_dag: str, parent_run_id: str) -> list[RunRecord]:
        """Runs started by steps of the run `parent_run_id` of `parent_dag`, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE parent_dag=? AND parent_run_id=? ORDER BY created_at, id",
            (parent_dag, parent_run_id),
        )
        return [run_from_row(r) for r in rows]

    def latest_runs(self, dag_names: Sequence[str]) -> dict[str, RunRecord]:
        """The most recently created run of each of `dag_names` that has one."""
        out: dict[str, RunRecord] = {}
        for name in dag_names:
            row = self._db.execute(
                "SELECT * FROM runs WHERE dag_name=? ORDER BY created_at DESC, id DESC LIMIT 1",
                (name,),
            ).fetchone()
            if row is not None:
                out[name] = run_from_row(row)
        return out

    # ------------------------------------------------------------------ steps

    def record_steps(self, run: int, steps: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert (or replace) the step rows of a run in one commit; their row ids.

        Each mapping has `position`, `kind`, `name` and optionally any other step column.
        """
        with self.transaction() as db:
            return self._insert_steps(db, run, steps)

    def _insert_steps(self, db: Any, run: int, steps: Sequence[Mapping[str, Any]]) -> list[int]:
        ids: list[int] = []
        for s in steps:
            # Replace, as SQLite's INSERT OR REPLACE would: columns not given get defaults.
            db.execute(
                "DELETE FROM steps WHERE run=? AND kind=? AND name=?",
                (run, s.get("kind", "step"), s["name"]),
            )
            cols = ["run", *s.keys()]
            values = [run, *(step_value(k, v) for k, v in s.items())]
            (step_id,) = db.execute(
                f"INSERT INTO steps ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))}) RETURNING id",
                values,
            ).fetchone()
            ids.append(int(step_id))
        return ids

    def update_step(self, step: int, **fields: Any) -> None:
        """Set columns of a step in one commit."""
        if fields:
            self.update_steps({step: fields})

    def update_steps(
        self,
        steps: Mapping[int, Mapping[str, Any]],
        *,
        run: int | None = None,
        run_fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Set columns of several steps (by row id), and with `run` those of a run, in one
        commit: a runner writes a pass's step changes together, and its last ones with its
        final status."""
        updates = step_updates(steps)
        if not updates and not (run is not None and run_fields):
            return
        with self.transaction() as db:
            self._apply_updates(db, updates, run, run_fields)

    def record_run_writes(
        self, run: int, writes: Sequence[tuple[Mapping[int, Mapping[str, Any]], Mapping[str, Any]]]
    ) -> None:
        """Apply a runner's buffered writes of `run` — (step columns by row id, run columns)
        each — in order, in one commit. Each sets absolute values, so a write applied twice
        (sent again after a commit whose answer was lost) changes nothing."""
        if not writes:
            return
        with self.transaction() as db:
            for steps, run_fields in writes:
                self._apply_updates(db, step_updates(steps), run, run_fields)

    def _apply_updates(
        self,
        db: Any,
        updates: Sequence[tuple[str, list[Any]]],
        run: int | None,
        run_fields: Mapping[str, Any] | None,
    ) -> None:
        for sql, values in updates:
            db.execute(sql, values)
        if run is not None and run_fields:
            self._update_run_in(db, run, run_fields)

    def list_steps(self, run: int) -> list[StepRecord]:
        """Steps and handlers of a run, in position order."""
        return [step_from_values(r) for r in self.list_step_rows(run)]

    def list_step_rows(self, run: int) -> list[tuple[Any, ...]]:
        """The step rows of a run as plain tuples of `STEP_COLUMNS`, in position order, for a
        reader that keeps what it made of them: equal rows make an equal result (the API's
        run details). `list_steps` decodes them."""
        columns = ", ".join(STEP_COLUMNS)
        rows = self._db.execute(
            f"SELECT {columns} FROM steps WHERE run=? ORDER BY position", (run,)
        )
        return [tuple(r) for r in rows]

    # ------------------------------------------------------------------ requests

    def record_request(
        self, *, kind: str, dag_name: str, run_id: str = "", args: dict[str, Any] | None = None
    ) -> int:
        """Write a request for the controller; returns its id."""
        with self.transaction() as db:
            row = db.execute(
                "INSERT INTO requests (kind, dag_name, run_id, args, created_at) "
                "VALUES (?,?,?,?,?) RETURNING id",
                (kind, dag_name, run_id, json.dumps(args or {}), time.time()),
            ).fetchone()
        return int(row[0])

    def list_open_requests(self) -> list[RequestRecord]:
        """Requests not yet done, oldest first."""
        rows = self._db.execute("SELECT * FROM requests WHERE done_at IS NULL ORDER BY id")
        return [request_from_row(r) for r in rows]

    def record_request_done(self, request: int, result: str = "") -> None:
        """Mark a request as carried out."""
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET done_at=?, result=? WHERE id=?",
                (time.time(), result, request),
            )

    # ------------------------------------------------------------------ controller

    def list_scheduled_runs(self, *, since: float) -> list[tuple[str, float]]:
        """(dag_name, scheduled_at) of every run of a cron instant after `since`."""
        rows = self._db.execute(
            "SELECT dag_name, scheduled_at FROM runs WHERE scheduled_at > ?", (since,)
        )
        return [(r[0], r[1]) for r in rows]

    def list_finished_runs(
        self,
        *,
        before: float,
        limit: int = 500,
        dag_names: Sequence[str] | None = None,
        exclude_dag_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        """Finished top-level runs with `finished_at <= before`, oldest first (retention),
        optionally only of `dag_names` or of every DAG but `exclude_dag_names`."""
        sql = (
            "SELECT * FROM runs WHERE finished_at IS NOT NULL AND finished_at <= ? "
            "AND status NOT IN (?,?,?) AND parent_run_id = ''"
        )
        args: list[Any] = [
            before,
            int(RunStatus.RUNNING),
            int(RunStatus.QUEUED),
            int(RunStatus.WAITING),
        ]
        if dag_names is not None:
            sql += f" AND dag_name IN ({','.join('?' * len(dag_names))})"
            args.extend(dag_names)
        if exclude_dag_names:
            sql += f" AND dag_name NOT IN ({','.join('?' * len(exclude_dag_names))})"
            args.extend(exclude_dag_names)
        sql += " ORDER BY finished_at LIMIT ?"
        args.append(limit)
        return [run_from_row(r) for r in self._db.execute(sql, args)]

    def finish_queued_run(self, run: int, *, status: RunStatus, error: str, now: float) -> bool:
        """QUEUED → `status` (e.g. aborted by a dequeue) in one commit, only if still queued;
        False when a runner claimed it first."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE runs SET status=?, error=?, finished_at=?, updated_at=? "
                "WHERE id=? AND status=?",
                (int(status), error, now, now, run, int(RunStatus.QUEUED)),
            )
        return bool(cur.rowcount == 1)

    def prune_run_tree(self, run: int) -> list[RunRecord]:
        """Delete a finished run, its sub-runs and their steps; returns the deleted rows (the
        caller removes their log files). Active rows are never deleted."""
        top = self.get_run_by_id(run)
        with self.transaction() as db:
            rows = [
                run_from_row(r)
                for r in db.execute(
                    "SELECT * FROM runs WHERE (id=? OR (root_dag=? AND root_run_id=? AND id<>?)) "
                    "AND status NOT IN (?,?,?)",
                    (
                        run,
                        top.dag_name,
                        top.run_id,
                        run,
                        int(RunStatus.RUNNING),
                        int(RunStatus.QUEUED),
                        int(RunStatus.WAITING),
                    ),
                )
            ]
            for r in rows:
                db.execute("DELETE FROM steps WHERE run=?", (r.id,))
                db.execute("DELETE FROM log_blobs WHERE run=?", (r.id,))
                db.execute("DELETE FROM runs WHERE id=?", (r.id,))
        return rows

    def record_instance(
        self, *, id: str, host: str, pid: int, status: str, started_at: float, now: float
    ) -> None:
        """Insert or update a controller instance row (its heartbeat is `now`)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO instances (id, host, pid, status, started_at, heartbeat_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status=excluded.status, "
                "heartbeat_at=excluded.heartbeat_at",
                (id, host, pid, status, started_at, now),
            )

    def record_leader(self, id: str, *, now: float) -> None:
        """`id` now leads: every other instance still recorded active is not (it died without
        saying so, or lost its lock), so that exactly one instance reads as active."""
        with self.transaction() as db:
            db.execute(
                "UPDATE instances SET status='stopped' WHERE status='active' AND id<>?", (id,)
            )
            db.execute("UPDATE instances SET status='active', heartbeat_at=? WHERE id=?", (now, id))

    def list_instances(self) -> list[InstanceRecord]:
        """Controller instances, newest first."""
        rows = self._db.execute("SELECT * FROM instances ORDER BY started_at DESC")
        return [InstanceRecord(**dict(r)) for r in rows]

    # ------------------------------------------------------------------ workers

    def dispatch_run(self, run: int, *, selector: dict[str, str], now: float) -> bool:
        """Hand a queued run to the workers (the leader's start decision), or hand it again
        after its worker died before starting it; False if it is no longer queued. Wakes
        listening workers on PostgreSQL."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE runs SET dispatched_at=?, worker_id='', worker_selector=?, updated_at=? "
                "WHERE id=? AND status=?",
                (now, json.dumps(selector), now, run, int(RunStatus.QUEUED)),
            )
            if self.dialect == "postgresql":
                db.execute("SELECT pg_notify('dagloop_dispatch', '')")
        return bool(cur.rowcount == 1)

    def claim_dispatched_runs(
        self, *, worker_id: str, labels: dict[str, str], limit: int, now: float
    ) -> list[RunRecord]:
        """Claim up to `limit` dispatched, unclaimed runs whose worker selector `labels`
        satisfy, oldest first (FIFO). On PostgreSQL candidates are locked with
        `FOR UPDATE SKIP LOCKED`, so workers claiming at once never wait on, nor take, the
        same row; SQLite's single writer gives the same guarantee."""
        if limit <= 0:
            return []
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        claimed: list[RunRecord] = []
        with self.transaction() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE status=? AND dispatched_at IS NOT NULL "
                f"AND worker_id='' ORDER BY queued_at, id LIMIT ?{skip_locked}",
                (int(RunStatus.QUEUED), limit * 4 + 16),
            ).fetchall()
            for row in rows:
                run = run_from_row(row)
                wanted = run.worker_selector or {}
                if any(labels.get(k) != v for k, v in wanted.items()):
                    continue
                db.execute(
                    "UPDATE runs SET worker_id=?, updated_at=? WHERE id=?",
                    (worker_id, now, run.id),
                )
                claimed.append(run)
                if len(claimed) == limit:
                    break
        return claimed

    def release_worker_claims(self, worker_id: str, *, now: float) -> int:
        """Give back the claimed runs of `worker_id` that no runner started (still queued), for
        another worker; returns how many."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE runs SET worker_id='', updated_at=? WHERE worker_id=? AND status=?",
                (now, worker_id, int(RunStatus.QUEUED)),
            )
        return int(cur.rowcount)

    def list_worker_runs(self, worker_id: str) -> list[RunRecord]:
        """Active runs claimed by `worker_id`, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE worker_id=? AND status IN (?,?,?) ORDER BY queued_at, id",
            (worker_id, int(RunStatus.RUNNING), int(RunStatus.QUEUED), int(RunStatus.WAITING)),
        )
        return [run_from_row(r) for r in rows]

    def record_worker(
        self,
        *,
        id: str,
        host: str,
        pid: int,
        labels: dict[str, str],
        max_active_runs: int,
        status: str,
        started_at: float,
        now: float,
    ) -> None:
        """Insert or update a worker row; its heartbeat is `now`."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO workers (id, host, pid, labels, max_active_runs, status, "
                "started_at, heartbeat_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE "
                "SET host=excluded.host, pid=excluded.pid, labels=excluded.labels, "
                "max_active_runs=excluded.max_active_runs, status=excluded.status, "
                "started_at=excluded.started_at, heartbeat_at=excluded.heartbeat_at",
                (id, host, pid, json.dumps(labels), max_active_runs, status, started_at, now),
            )

    def list_workers(self) -> list[WorkerRecord]:
        """Workers as they last reported, newest start first."""
        rows = self._db.execute("SELECT * FROM workers ORDER BY started_at DESC, id")
        return [worker_from_row(r) for r in rows]

    # ------------------------------------------------------------------ shipped logs

    def record_log_blob(
        self, run: int, path: str, content: bytes, *, truncated: int, now: float
    ) -> None:
        """Keep a copy of a finished log file (its tail; `truncated` bytes cut from the head)
        so that the API of any host can serve it."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO log_blobs (path, run, content, truncated, created_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET content=excluded.content, "
                "truncated=excluded.truncated, created_at=excluded.created_at",
                (path, run, content, truncated, now),
            )

    def get_log_blob(self, path: str) -> tuple[bytes, int] | None:
        """(content, bytes cut from the head) of a shipped log file, or None."""
        row = self._db.execute(
            "SELECT content, truncated FROM log_blobs WHERE path=?", (path,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    # ------------------------------------------------------------------ skipped ticks, meta

    def record_skipped_ticks(
        self, dag_name: str, instants: Sequence[float], *, reason: str, now: float
    ) -> int:
        """Record start ticks of `dag_name` that did not run, in one commit; a tick recorded
        before is kept as it was. Returns how many were new (what the counter grew by)."""
        if not instants:
            return 0
        added = 0
        with self.transaction() as db:
            for at in instants:
                cur = db.execute(
                    "INSERT INTO skipped_ticks (dag_name, scheduled_at, reason, recorded_at) "
                    "VALUES (?,?,?,?) ON CONFLICT (dag_name, scheduled_at) DO NOTHING",
                    (dag_name, at, reason, now),
                )
                added += max(cur.rowcount, 0)  # 0 for a tick recorded before
        return added

    def list_skipped_ticks(
        self, *, since: float, dag_name: str | None = None
    ) -> list[tuple[str, float, str]]:
        """(dag_name, scheduled_at, reason) of skipped ticks after `since`, oldest first."""
        sql = "SELECT dag_name, scheduled_at, reason FROM skipped_ticks WHERE scheduled_at > ?"
        args: list[Any] = [since]
        if dag_name is not None:
            sql += " AND dag_name = ?"
            args.append(dag_name)
        rows = self._db.execute(sql + " ORDER BY scheduled_at, dag_name", args)
        return [(r[0], r[1], r[2]) for r in rows]

    def skipped_totals(self) -> dict[str, int]:
        """Skipped start ticks ever recorded, per DAG (monotonic: pruning keeps the totals)."""
        return {r[0]: r[1] for r in self._db.execute("SELECT dag_name, count FROM skipped_totals")}

    def prune_skipped_ticks(self, *, before: float) -> int:
        """Delete skipped-tick rows of instants before `before`; the totals stay."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM skipped_ticks WHERE scheduled_at < ?", (before,))
        return int(cur.rowcount)

    def get_meta(self, key: str) -> str | None:
        """A value of the `meta` table, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the `meta` table in one commit."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def run_totals_signature(self) -> tuple[int, int, float]:
        """(rows, finished runs, summed durations) of `run_totals`: changes whenever a run
        finishes (the triggers), so a reader can cache what it derived from the totals."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), COALESCE(SUM(duration_sum), 0) "
            "FROM run_totals"
        ).fetchone()
        return (int(row[0]), int(row[1]), float(row[2]))

    def max_finished_at(self) -> float | None:
        """The newest `finished_at` of any run (indexed; a cheap "did a run finish?" probe)."""
        row = self._db.execute(
            "SELECT finished_at FROM runs WHERE finished_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
        return None if row is None else float(row[0])

    # ------------------------------------------------------------------ error totals

    def record_error(self, kind: str) -> None:
        """Count one error of `kind` (e.g. `disk_full`) in the monotonic total
        `meta['errors.KIND']` that `/metrics` reads (`dagloop_disk_full_total`)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE "
                "SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
                (f"errors.{kind}",),
            )

    def list_error_totals(self) -> dict[str, int]:
        """Every error total by kind (`{"disk_full": 3}`); kinds never seen are absent."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'errors.%'")
        return {str(k).removeprefix("errors."): int(v) for k, v in rows}
