"""Shared plumbing of the run commands (`start`, `retry`, `restart`, `dry`, `status`, `stop`).

Owns: loading a DAG file with base.yaml, the columns a runner writes when it
starts a run, the stored params, and `execute_run`, which wires a `Runner` and the progress
shown to people (`controller.engine.progress`) to a run row and returns the exit code (the log
directory of the run is `controller.runlogs`'s). Called by `controller.commands.*`,
`controller.engine.start` and the fork-server's warmer (`controller.spawn.child`).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from controller import runlogs
from controller.engine.progress import (
    Display,
    choose_display,
    final_lines,
    open_progress,
    step_summaries,
    summary_lines,
    write_lines,
)
from controller.logline import add_secret, redact
from controller.runevents import RunEvents
from controller.store.records import RunRecord, StoreUnavailable
from controller.store.store import Store
from model.status import RunStatus

__all__ = [
    "execute_run",
    "load",
    "local_dag",
    "params_for_runner",
    "params_to_pairs",
    "started_fields",
    "stored_params",
]


def load(path: Path, settings: Any, *, text: str | None = None, local: str | None = None) -> Any:
    """Load a DAG file (or a snapshot `text` of it) merged over base.yaml; `local` selects a
    sub-DAG document of the file."""
    from model import speccache

    def fresh() -> Any:
        # Imports pydantic and builds the validation schemas: only on a cache miss.
        from model.loader import load_base, load_dag, load_dag_text

        base = load_base(settings.base_config)
        if text is not None:
            return load_dag_text(text, file=str(path), location=path, base=base)
        return load_dag(path, base=base, max_bytes=settings.max_dag_file_bytes)

    dag = speccache.load(
        path,
        base_config=settings.base_config,
        cache_dir=settings.data_dir,
        loader=fresh,
        text=text,
        max_bytes=settings.max_dag_file_bytes,
    )
    if local:
        sub = local_dag(dag, local)
        if sub is None:
            raise FileNotFoundError(f"no sub-DAG {local!r} in {path}")
        return sub
    return dag


def local_dag(dag: Any, name: str) -> Any:
    """The local document `name` of a loaded file, seeing its sibling documents as its own
    `local_dags` (None when the file has no such document).

    A local DAG may `call:` another local DAG of the same file, at any depth (Dagu); the
    loader keeps the documents only on the file's first DAG, since a document holding its
    siblings would hold itself and the cached spec would be cyclic.
    """
    sub = dag.local_dags.get(name)
    if sub is None:
        return None
    seeing = copy.copy(sub)
    # Dag is a frozen dataclass (the light cached twin a plain class): set past the freeze on
    # a copy, so the cached spec is not changed.
    object.__setattr__(seeing, "local_dags", dag.local_dags)
    return seeing


def params_to_pairs(params: list[str]) -> list[tuple[str, str]]:
    """Stored ``NAME=value`` strings back to pairs."""
    out = []
    for item in params:
        key, _, value = item.partition("=")
        out.append((key, value))
    return out


def proc_self_start() -> float | None:
    """This process's start time in clock ticks (guards the pid against reuse)."""
    from controller.process import proc_start_ticks

    return proc_start_ticks(os.getpid())


def execute_run(
    *,
    store: Store,
    settings: Any,
    dag: Any,
    run: RunRecord,
    params: list[tuple[str, str]],
    quiet: bool,
    as_json: bool,
    previous: dict[str, Any] | None = None,
    retry_step: str | None = None,
    start_recorded: bool = False,
    step_ids: Sequence[int] | None = None,
    log_stderr: bool = False,
    inherited_secrets: Sequence[str] = (),
    progress: str = "auto",
    no_color: bool = False,
) -> int:
    """Run `dag` as the already-RUNNING row `run`; print the outcome; return the exit code.
    `start_recorded`: `run` was read back after a write of `started_fields` (the runner's
    claim of a queued row carries them, saving a transaction at the minute boundary), and
    `step_ids` are the rows of `graph.initial_step_rows` written with it. `log_stderr`: the
    run's log events go to stderr too when the log format is JSON (`dagloop start`).
    `progress` (auto, always, never) and `no_color` choose how the run is shown
    (`progress.choose_display`)."""
    from controller.engine.heartbeat import Heartbeat
    from controller.engine.runner import Runner, RunnerOptions

    log_dir = _log_dir(settings, dag, run)
    log_file = log_dir / runlogs.RUN_LOG
    _register_secrets(params, settings)
    _register_dag_secrets(inherited_secrets)
    if not start_recorded:
        store.update_run(run.id, **started_fields(settings, dag, run))
        run = store.get_run_by_id(run.id)
    events = RunEvents(
        log_format=settings.log_format,
        dag=dag.name,
        run_id=run.run_id,
        run_log=log_file,
        stream=sys.stderr if log_stderr and settings.log_format == "json" else None,
    )
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        events.run_started(attempt=run.attempt)
    except OSError as exc:
        # A full log disk (issue 8 #22): the run cannot keep a log, so it fails before any
        # step, with the reason on its row and one line on stderr, never a traceback.
        events.run_log = None
        error = describe_log_error(exc, log_file)
        return _fail_before_steps(store, run, dag, error, as_json, events)
    # --json with JSON log events on stderr: both streams are for machines, no progress
    display = _display(
        as_json=as_json,
        quiet=quiet or (as_json and events.stream is not None),
        progress=progress,
        no_color=no_color,
        json_events=events.stream is not None,
    )
    shown = open_progress(
        sys.stderr if as_json else sys.stdout,
        display,
        dag_name=dag.name,
        run_id=run.run_id,
        total=len(dag.spec.steps),
        started_at=run.started_at or time.time(),
    )
    beat = Heartbeat(
        settings.database_url or settings.db_path, run.id, settings.heartbeat_interval_seconds
    )
    beat.start()
    try:
        runner = Runner(
            RunnerOptions(
                dag=dag,
                settings=settings,
                store=store,
                run=run,
                params=params,
                log_dir=log_dir,
                previous=previous,
                retry_step=retry_step,
                progress=shown,
                step_ids=step_ids,
                events=events,
                inherited_secrets=inherited_secrets,
                note=events.outage_note,
            )
        )
        if shown is not None:
            shown.follow(runner, mask=_masker(runner))
        status = runner.execute()
    finally:
        beat.stop()
        if shown is not None:
            shown.close()
    try:
        outcome = (status, run, log_file)
        return _report(runner, outcome, store, settings, dag, events, display, quiet, as_json)
    except StoreUnavailable as exc:
        # The end is recorded, and the database went away again: the outcome stands.
        print(f"dagloop: {exc}", file=sys.stderr)
        return _exit_code(status, run)


def _report(
    runner: Any,
    outcome: tuple[RunStatus, RunRecord, Path],
    store: Store,
    settings: Any,
    dag: Any,
    events: RunEvents,
    display: Display,
    quiet: bool,
    as_json: bool,
) -> int:
    """After the run: alerts, the last log line, the outcome printed; the exit code."""
    status, run, log_file = outcome
    _register_dag_secrets(runner.vars.secret_values.values())
    # The final status is recorded and no step is left to start (a step would inherit the
    # niceness): the rest (alerts, the last log line, the exit's unmapping) yields the CPU
    # to runners starting now — fifty of them share a minute boundary on two cores.
    os.nice(10)
    alert_notes = _send_alerts(runner, settings, store, run.id)
    for note in alert_notes:  # the runner's own notes were logged when they arose
        events.note("WARNING", "alert mail not sent", error=note)
    notes = [*runner.notes, *alert_notes]
    if notes:
        store.update_run(run.id, notes="\n".join(notes))
    _count_disk_full(store, run.id)
    run = store.get_run_by_id(run.id)
    _log_finished(events, status, run.error, log_file)
    events.close()
    if run.error.startswith(_BEFORE_STEPS_ERRORS) and events.stream is None:
        # the run failed before any step: the reason (naming the secret or env entry) on
        # stderr, as for `_fail_before_steps` (Dagu prints it as its `Error:` line); in JSON
        # the `run finished` event on stderr carries it
        print(f"dagloop: run {run.run_id} of {dag.name} failed: {run.error}", file=sys.stderr)
    if as_json:
        from controller.views.runs import run_details

        sys.stdout.write(json.dumps(run_details(store, run), ensure_ascii=False) + "\n")
    elif not quiet:
        _print_summary(runner, run, status, color=display.color)
    return _exit_code(status, run)


def _exit_code(status: RunStatus, run: RunRecord) -> int:
    """0 for a succeeded run (and one skipped by a DAG precondition), else 1."""
    if status == RunStatus.SUCCEEDED:
        return 0
    if status == RunStatus.ABORTED and run.error.startswith("precondition not met"):
        return 0
    return 1


def _log_finished(events: RunEvents, status: RunStatus, error: str, log_file: Path) -> None:
    """The run's last event; the outcome is recorded already, so a log that cannot be written
    costs only the line (and says so on stderr)."""
    level = _FINISHED_LEVELS.get(status, "WARNING")
    facts = {"status": status.label, **({"error": error} if error else {})}
    try:
        events.emit(level, "run finished", **facts)
    except OSError as exc:
        error = describe_log_error(exc, log_file)
        events.tell("ERROR", "run log not written", text=f"dagloop: {error}", error=error)


_FINISHED_LEVELS = {RunStatus.SUCCEEDED: "INFO", RunStatus.FAILED: "ERROR"}


def _display(
    *, as_json: bool, quiet: bool, progress: str, no_color: bool, json_events: bool
) -> Display:
    """How this run is shown. With `--json` the step lines go to stderr as plain lines (stdout
    holds only the JSON document), as they always have. JSON log events on a stderr that is
    the same terminal would tear a view redrawn in place, so then `auto` gives plain lines."""
    stream = sys.stderr if as_json else sys.stdout
    shared_tty = json_events and progress == "auto" and sys.stderr.isatty()
    return choose_display(
        progress="never" if as_json or shared_tty else progress,
        quiet=quiet,
        no_color=no_color,
        tty=stream.isatty(),
        environ=os.environ,
        encoding=getattr(stream, "encoding", None),
    )


def _print_summary(runner: Any, run: RunRecord, status: RunStatus, *, color: bool) -> None:
    """Every step's outcome, where to look next, and the outcome line, on stdout."""
    finished = run.finished_at or time.time()
    rows = step_summaries(runner.nodes, runner.handlers.values(), mask=_masker(runner))
    lines = summary_lines(
        rows,
        dag_name=run.dag_name,
        status=status,
        seconds=max(finished - (run.started_at or finished), 0.0),
        color=color,
    )
    lines += final_lines(dag_name=run.dag_name, run_id=run.run_id, status=status, color=color)
    write_lines(sys.stdout, lines)


def _masker(runner: Any) -> Callable[[str], str]:
    """Masks a step's text (its error, its stderr) before it is shown: the DAG's `secrets:` as
    the step logs do, and the secret-named params as the run log does (a step's own log may
    hold those in clear; stdout may be a CI log)."""

    def mask(text: str) -> str:
        return redact(str(runner.writes.mask(text)))

    return mask


# The run errors of the runner's environment build (`Runner._execute`).
_BEFORE_STEPS_ERRORS = ("failed to resolve secrets:", "cannot build the environment:")


def started_fields(settings: Any, dag: Any, run: RunRecord) -> dict[str, Any]:
    """The columns a runner writes when it starts `run` in this process: its pid (with the
    start time guarding against reuse), host, log file and start instant."""
    now = time.time()
    return {
        "pid": os.getpid(),
        "pid_started": proc_self_start(),
        "host": os.uname().nodename,
        "log_file": str(_log_dir(settings, dag, run) / runlogs.RUN_LOG),
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
        "stop_requested_at": None,
        "error": "",
    }


def _log_dir(settings: Any, dag: Any, run: RunRecord) -> Path:
    """The directory of this attempt of `run` (`controller.runlogs` owns the layout)."""
    return runlogs.attempt_dir(settings.log_dir, dag.name, run.run_id, run.attempt)


def describe_log_error(exc: OSError, path: Path) -> str:
    """`cannot write the run log PATH: No space left on device (ENOSPC, errno 28)`."""
    from controller.diskfull import describe_os_error

    return f"cannot write the run log {describe_os_error(exc, path)}"


def _register_secrets(params: list[tuple[str, str]], settings: Any) -> None:
    """Mask secret-named param values in every log line this process writes."""
    from controller.engine.runparams import secret_values

    for value in secret_values(params, tuple(settings.secret_patterns)).values():
        add_secret(value)


def _register_dag_secrets(values: Iterable[str]) -> None:
    """Mask the DAG's resolved `secrets:` in the lines this process still writes."""
    for value in values:
        add_secret(value)


def _fail_before_steps(
    store: Store, run: RunRecord, dag: Any, error: str, as_json: bool, events: RunEvents
) -> int:
    """Record `run` failed with `error` before any step ran; say so on stderr (one line, an
    event in JSON); exit code 1."""
    from controller.diskfull import mentions_enospc

    store.update_run(run.id, status=RunStatus.FAILED, finished_at=time.time(), error=error)
    if mentions_enospc(error):
        store.record_error("disk_full")
    text = f"dagloop: run {run.run_id} of {dag.name} failed: {error}"
    events.tell("ERROR", "run failed", text=text, status=RunStatus.FAILED.label, error=error)
    if as_json:
        from controller.views.runs import run_details

        doc = run_details(store, store.get_run_by_id(run.id))
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return 1


def _count_disk_full(store: Store, run_row: int) -> None:
    """Count the run in `disk_full` when a step of it failed on a full disk."""
    from controller.diskfull import mentions_enospc

    if any(mentions_enospc(s.error) for s in store.list_steps(run_row)):
        store.record_error("disk_full")


def params_for_runner(
    run: RunRecord, dag: Any, settings: Any, *, queued: bool
) -> list[tuple[str, str]]:
    """The params a runner of `run` needs: the stored ones, with masked secret values
    restored (controller.engine.runparams): the values handed over for a `queued` run, else the
    DAG's defaults."""
    from controller.engine.runparams import take_handed_over, unmask_params
    from model.params import resolve_params

    handed = take_handed_over(settings.data_dir, run.dag_name, run.run_id) if queued else {}
    if not any(p.endswith("=*****") for p in run.params):
        return params_to_pairs(run.params)
    return unmask_params(
        run.params, defaults=resolve_params(dag.spec.params, []), handed_over=handed
    )


def stored_params(
    params: list[tuple[str, str]], settings: Any, inherited_secrets: Sequence[str] = ()
) -> list[str]:
    """`NAME=value` strings for `runs.params`: secret-named values masked, and a parent run's
    secret values (a sub-DAG's params) masked as Dagu masks a DAG's secrets."""
    from controller.engine.runparams import mask_params
    from controller.secrets import dag_secret_masker

    stored = mask_params(params, tuple(settings.secret_patterns))
    if not inherited_secrets:
        return stored
    masker = dag_secret_masker(inherited_secrets)
    return [masker.mask(item) for item in stored]


def _send_alerts(runner: Any, settings: Any, store: Store, run_row: int) -> list[str]:
    """Send the alert mails of the finished run; returns its failures, for the run's notes
    (never its status)."""
    spec = runner.dag.spec
    on = spec.mail_on
    if not (
        (on is not None and (on.failure or on.success)) or any(s.mail_on_error for s in spec.steps)
    ):
        return []
    from controller.notify.alerts import notify_run_finished
    from controller.secrets import collect_secrets
    from controller.views.runs import run_details

    run = store.get_run_by_id(run_row)
    smtp_password = runner.expand_text(spec.smtp.password) if spec.smtp is not None else None
    masker = collect_secrets(
        env_pairs=runner.dag_vars.items(),
        dotenv_values=runner.dotenv_values,
        smtp_password=smtp_password,
        patterns=tuple(settings.secret_patterns),
    )
    dag_masker = runner.vars.secret_masker
    mask = masker.mask
    if dag_masker is not None:  # the DAG's `secrets:` first, however short, as `*******`

        def mask(text: str) -> str:
            return masker.mask(dag_masker.mask(text))

    step_logs = {s.name: Path(s.stdout) for s in store.list_steps(run.id) if s.stdout}
    notes = notify_run_finished(
        dag=runner.dag,
        details=run_details(store, run),
        expand=runner.expand_text,
        step_logs=step_logs,
        mask=mask,
    )
    return list(notes)
