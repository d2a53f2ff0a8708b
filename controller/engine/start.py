"""Starting one run in this process: what `dagloop start` does once its options are parsed.

`start` resolves the DAG, then either claims the QUEUED row named by `run_id` (the control
loop's contract: the claim is atomic, so a second runner for the same row exits 1; the row's
snapshot and params are used) or records a new RUNNING row (a manual or sub-DAG run,
`maxActiveRuns` enforced atomically), and runs it (`launch.execute_run`). Exit 0 for succeeded
(and a DAG-precondition abort), 1 otherwise, with one `dagloop start: …` line on stderr for a
refusal.

`prepare` does the start-up work of such a runner before its row exists (the fork-server's
prepared runners, forked ahead of a start instant); `start` then uses it when it starts the
same file with the same config, and the prepared spec only if the row's snapshot is the same
text.

Callers: `controller.commands.start` (the verb, and `restart` through it) and the fork-server's
children (`controller.spawn.child`), which pass the settings they loaded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from controller import runlogs
from controller.dagfile import find_dag_file
from controller.engine import launch
from controller.engine.graph import initial_step_rows
from controller.ids import new_run_id
from controller.liveness import NOT_CLAIMED_EXIT
from controller.revision import revision_of
from controller.runevents import RunEvents
from controller.store.records import (
    Conflict,
    LimitReached,
    NotFound,
    RunRecord,
    StoreError,
    StoreUnavailable,
)
from controller.store.retry import open_store, retry_unavailable
from controller.store.store import Store
from model.config import Settings
from model.params import RUN_ID_MAX_LENGTH, RUN_ID_PATTERN, resolve_params
from model.status import RunStatus

__all__ = ["Prepared", "StartOptions", "prepare", "start"]


class StartOptions(NamedTuple):
    """What a run is started with (the options of `dagloop start`); a NamedTuple, cheaper to
    define at a runner's start-up than a frozen dataclass."""

    dag: str  # a DAG name (in the dags dir) or file
    run_id: str | None = None  # a QUEUED row's to claim, or the new run's; None: a fresh id
    params: Sequence[str] = ()  # `-p` values, then the params after `--`
    quiet: bool = False
    as_json: bool = False  # print the run details as JSON
    parent: str | None = None  # NAME:ID of the parent run (a sub-DAG run)
    root: str | None = None  # NAME:ID of the root run
    local: str | None = None  # a sub-DAG document of the file
    config: str | None = None  # the config file the settings came from
    dagu_home: str | None = None  # DAGU_HOME the settings came from, if given
    log_stderr: bool = False  # log events on stderr in JSON (`dagloop start` in a terminal)
    inherited_secrets: tuple[str, ...] = ()  # the parent run's secret values, to mask
    progress: str = "auto"  # live view: auto (on a terminal), always, never
    no_color: bool = False


@dataclass
class Prepared:
    """What `prepare` set up for a runner of `file` (resolved to `path`) with `config`."""

    file: str
    config: str | None
    settings: Settings
    path: Path
    store: Store
    text: str  # the snapshot `dag` was loaded from ('' = the file)
    dag: Any
    logs_ahead: Path | None = None  # the run's log directory, made ahead (`runlogs`)

    def fits(self, opts: StartOptions) -> bool:
        """Whether `start(opts)` starts what this was prepared for."""
        return (
            opts.dag == self.file
            and opts.config == self.config
            and not opts.dagu_home
            and not opts.local
        )


def prepare(file: str, text: str, *, settings: Settings, config: str | None) -> Prepared:
    """Store and spec (`text`, the snapshot the controller will record; '' for the file) of
    a runner of `file` started with `settings` (loaded from `config`), as `start` would get
    them, and its log directory made ahead; raises what they raise."""
    path = find_dag_file(file, settings.dags_dir)
    store = open_store(settings, role="runner")
    try:
        dag = launch.load(path, settings, text=text or None)
    except BaseException:
        store.close()
        raise
    steps = ((s.name, s.merges_logs(dag.spec.log_output)) for s in dag.spec.steps)
    logs_ahead = runlogs.make_logs_ahead(settings.log_dir, steps)
    return Prepared(file, config, settings, path, store, text, dag, logs_ahead)


class _Refused(Exception):
    """The run is not started: the message for stderr, exit code 1."""


class _NotClaimed(Exception):
    """The queued run could not be read or claimed while the database stayed away: it is not
    started, and the runner exits `NOT_CLAIMED_EXIT` so that it is handed out again."""


def start(opts: StartOptions, *, settings: Settings, prepared: Prepared | None = None) -> int:
    """Start the run in this process; returns the exit code. `prepared` (from `prepare`) is
    used if it fits `opts` (then `settings` are its settings)."""
    if prepared is not None and not prepared.fits(opts):
        prepared.store.close()
        prepared = None
    try:
        _check_run_id(opts.run_id)
        path = _find(opts.dag, settings)
        if prepared is not None and prepared.path != path:
            prepared.store.close()  # the file now resolves elsewhere: start from scratch
            prepared = None
        store = prepared.store if prepared is not None else _open_store(settings)
    except _Refused as exc:
        return _refuse(opts, settings, exc)
    try:
        return _start_with(store, settings, path, opts, prepared)
    except _NotClaimed as exc:
        _refuse(opts, settings, exc)
        return NOT_CLAIMED_EXIT
    except (_Refused, StoreError) as exc:  # StoreError: a write the disk refused mid-run;
        return _refuse(opts, settings, exc)  # the row is then reaped as lost
    finally:
        store.close()


def _refuse(opts: StartOptions, settings: Settings, exc: Exception, **facts: Any) -> int:
    """Say why the run is not started (or stopped short) on stderr: one `dagloop start: …`
    line, or in JSON one error event with the reason in its fields; exit code 1."""
    name = opts.local or Path(opts.dag).stem  # the DAG's name: it may not be loaded
    json_stderr = opts.log_stderr and settings.log_format == "json"
    events = RunEvents(
        log_format=settings.log_format,
        dag=name,
        run_id=opts.run_id,
        stream=sys.stderr if json_stderr else None,
    )
    text = f"dagloop start: {exc}"
    events.tell("ERROR", "run not started", text=text, error=str(exc), **facts)
    return 1


def _start_with(
    store: Store, settings: Settings, path: Path, opts: StartOptions, prepared: Prepared | None
) -> int:
    """Claim or record the run in `store`, then run it; raises `_Refused`."""
    name_guess = opts.local or path.stem
    queued = None
    if opts.run_id is not None:
        run_id = opts.run_id
        try:
            queued = retry_unavailable(
                lambda: _queued_row(store, name_guess, run_id, named=True),
                wait_seconds=settings.database_wait_seconds,
            )
        except StoreUnavailable as exc:
            why = f"run {run_id} not started, the database is unavailable: {exc}"
            raise _NotClaimed(why) from None
    snapshot = queued.spec_yaml if queued is not None else ""
    try:
        if prepared is not None and snapshot and snapshot == prepared.text:
            dag = prepared.dag  # loaded from the run's own snapshot: the current spec
        else:
            dag = launch.load(path, settings, text=snapshot or None, local=opts.local)
    except _load_error() as exc:
        if queued is not None:
            store.update_run(queued.id, status=RunStatus.FAILED, error=str(exc))
        return _refuse(opts, settings, exc, file=str(path), errors=_load_errors(exc))
    if dag.name != name_guess and opts.run_id is not None and queued is None:
        queued = _queued_row(store, dag.name, opts.run_id, named=False)
    if queued is not None:
        # A runner started just before an outage waits for the database to claim its run
        # (`database.waitSeconds`): the claim is conditional, so sending it again is safe.
        claimed = queued
        try:
            run, step_ids = retry_unavailable(
                lambda: _claim(store, settings, dag, claimed),
                wait_seconds=settings.database_wait_seconds,
            )
        except StoreUnavailable as exc:
            why = f"run {claimed.run_id} not started, the database is unavailable: {exc}"
            raise _NotClaimed(why) from None
        params = launch.params_for_runner(run, dag, settings, queued=True)
    else:
        params = resolve_params(dag.spec.params, _overrides(list(opts.params)))
        run, step_ids = _record(store, settings, dag, path, opts, params), None
    return launch.execute_run(
        store=store,
        settings=settings,
        dag=dag,
        run=run,
        params=params,
        quiet=opts.quiet,
        as_json=opts.as_json,
        start_recorded=queued is not None,
        step_ids=step_ids,
        log_stderr=opts.log_stderr,
        inherited_secrets=opts.inherited_secrets,
        progress=opts.progress,
        no_color=opts.no_color,
    )


def _check_run_id(run_id: str | None) -> None:
    if run_id is not None and (not RUN_ID_PATTERN.match(run_id) or len(run_id) > RUN_ID_MAX_LENGTH):
        raise _Refused(f"invalid run id {run_id!r}")


def _find(dag: str, settings: Settings) -> Path:
    try:
        return find_dag_file(dag, settings.dags_dir)
    except FileNotFoundError as exc:
        raise _Refused(str(exc)) from None


def _open_store(settings: Settings) -> Store:
    try:
        return open_store(settings, role="runner")  # waits `database.waitSeconds` for it
    except StoreError as exc:  # e.g. a full data disk (issue 8 #22): one line, no traceback
        raise _Refused(str(exc)) from None


def _queued_row(store: Store, dag_name: str, run_id: str, *, named: bool) -> RunRecord | None:
    """The QUEUED row `run_id` of `dag_name`, or None if there is none; any other status is
    refused (`named`: the message names the DAG and the status)."""
    try:
        row = store.get_run(dag_name, run_id)
    except NotFound:
        return None
    if row.status == RunStatus.QUEUED:
        return row
    if named:
        raise _Refused(f"run {run_id!r} of {dag_name!r} already exists ({row.status.label})")
    raise _Refused(f"run {run_id!r} already exists")


def _claim(
    store: Store, settings: Settings, dag: Any, queued: RunRecord
) -> tuple[RunRecord, Sequence[int]]:
    """Claim the QUEUED row for this process: the row RUNNING with its start fields, and its
    step rows; refused when another runner claimed it or it was dequeued."""
    attempt_id = new_run_id(time.time())[-6:]
    started = launch.started_fields(settings, dag, queued)
    # The step rows go with the claim: one write, where fifty runners of a minute boundary
    # queue for the database's one write lock.
    claimed = store.claim_queued_run(
        queued.id, steps=initial_step_rows(dag), attempt_id=attempt_id, **started
    )
    if claimed is None:
        raise _Refused(
            f"run {queued.run_id!r} is no longer queued (claimed by another runner or dequeued)"
        )
    return claimed


def _record(
    store: Store,
    settings: Settings,
    dag: Any,
    path: Path,
    opts: StartOptions,
    params: list[tuple[str, str]],
) -> RunRecord:
    """Record a new RUNNING run (manual, or a sub-DAG run of `opts.parent`); refused when
    `maxActiveRuns` is reached or the run id is taken."""
    parent_dag, _, parent_id = (opts.parent or "").partition(":")
    root_dag, _, root_id = (opts.root or "").partition(":")
    text = dag.source or path.read_text(encoding="utf-8")
    rev = revision_of(path, text)
    try:
        run = store.record_run(
            dag_name=dag.name,
            run_id=opts.run_id or new_run_id(time.time()),
            status=RunStatus.RUNNING,
            file=str(path),
            spec_yaml=text,
            revision_commit=rev.commit,
            revision_dirty=rev.dirty,
            queue=dag.queue,
            trigger="sub" if opts.parent else "manual",
            params=launch.stored_params(params, settings, opts.inherited_secrets),
            parent_dag=parent_dag,
            parent_run_id=parent_id,
            root_dag=root_dag,
            root_run_id=root_id,
            # maxActiveRuns holds for every run (DESIGN §7), atomically (issue 8 #20)
            max_active=None if opts.parent else dag.spec.max_active_runs,
        )
    except LimitReached as exc:
        raise _Refused(f"refused: {exc}; use `dagloop enqueue`") from None
    except Conflict:
        raise _Refused(f"run id {opts.run_id!r} is taken") from None
    store.update_run(run.id, attempt_id=new_run_id(time.time())[-6:])
    return store.get_run_by_id(run.id)


# Both helpers import model.loader (and so pydantic) only when needed: a cached DAG started
# without params never pays for it. An `except` clause evaluates its type only when an
# exception is being handled.
def _load_error() -> type[Exception]:
    from model.loader import DagLoadError

    return DagLoadError


def _load_errors(exc: Exception) -> list[dict[str, Any]]:
    """The problems of a DAG file that does not load (`DagLoadError.errors`), as fields."""
    return [e.as_dict() for e in getattr(exc, "errors", ())]


def _overrides(tokens: list[str]) -> list[tuple[str | None, str]]:
    if not tokens:
        return []
    from model.loader import parse_param_overrides

    return parse_param_overrides(tokens)
