"""Shared plumbing of the run commands (`start`, `retry`, `restart`, `dry`, `status`, `stop`).

Owns: loading a DAG file with base.yaml, the columns a runner writes when it
starts a run, the stored params, the progress printer, and `execute_run`, which wires a
`Runner` to a run row and returns the exit code (the log directory of the run is
`controller.runlogs`'s). Called by `controller.commands.*`, `controller.engine.start` and the
fork-server's warmer (`controller.spawn.child`).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from controller import runlogs
from controller.store.records import RunRecord, StoreUnavailable
from controller.store.store import Store
from controller.utc import utc_text
from model.status import RunStatus, StepStatus

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


class Progress:
    """Prints one line per step transition: compact live view on a TTY, plain lines otherwise."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()

    def __call__(self, node: Any) -> None:
        if self.quiet:
            return
        status = node.status
        if status == StepStatus.RUNNING and node.done_count == 0 and node.retry_count == 0:
            if not self.tty:
                return
        dur = ""
        if node.started_at and node.finished_at:
            dur = f" {node.finished_at - node.started_at:.1f}s"
        extra = f" retries={node.retry_count}" if node.retry_count else ""
        code = f" exit={node.exit_code}" if node.exit_code not in (None, 0) else ""
        label = status.label
        if self.tty:
            colour = {
                StepStatus.SUCCEEDED: "32",
                StepStatus.FAILED: "31",
                StepStatus.ABORTED: "33",
                StepStatus.SKIPPED: "90",
                StepStatus.RUNNING: "36",
            }.get(status, "0")
            label = f"\x1b[{colour}m{label:<9}\x1b[0m"
        else:
            label = f"{label:<9}"
        self.stream.write(f"{label} {node.name}{dur}{extra}{code}\n")
        self.stream.flush()


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
) -> int:
    """Run `dag` as the already-RUNNING row `run`; print the outcome; return the exit code.
    `start_recorded`: `run` was read back after a write of `started_fields` (the runner's
    claim of a queued row carries them, saving a transaction at the minute boundary), and
    `step_ids` are the rows of `graph.initial_step_rows` written with it."""
    from controller.engine.heartbeat import Heartbeat
    from controller.engine.runner import Runner, RunnerOptions

    log_dir = _log_dir(settings, dag, run)
    log_file = log_dir / runlogs.RUN_LOG
    _register_secrets(params, settings)
    if not start_recorded:
        store.update_run(run.id, **started_fields(settings, dag, run))
        run = store.get_run_by_id(run.id)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        _append_log(
            log_file,
            f"{_ts()} INFO run started dag={dag.name} run_id={run.run_id} "
            f"attempt={run.attempt} pid={os.getpid()}\n",
        )
    except OSError as exc:
        # A full log disk (issue 8 #22): the run cannot keep a log, so it fails before any
        # step, with the reason on its row and one line on stderr, never a traceback.
        return _fail_before_steps(store, run, dag, describe_log_error(exc, log_file), as_json)
    out = sys.stderr if as_json else sys.stdout
    progress = Progress(out, quiet=quiet)
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
                progress=progress,
                step_ids=step_ids,
                note=lambda line: _note(log_file, line),
            )
        )
        status = runner.execute()
    finally:
        beat.stop()
    try:
        return _report(runner, status, store, settings, dag, run, log_file, quiet, as_json)
    except StoreUnavailable as exc:
        # The end is recorded, and the database went away again: the outcome stands.
        print(f"dagloop: {exc}", file=sys.stderr)
        return _exit_code(status, run)


def _report(
    runner: Any,
    status: RunStatus,
    store: Store,
    settings: Any,
    dag: Any,
    run: RunRecord,
    log_file: Path,
    quiet: bool,
    as_json: bool,
) -> int:
    """After the run: alerts, the last log line, the outcome printed; the exit code."""
    _register_dag_secrets(runner.vars.secret_values.values())
    # The final status is recorded and no step is left to start (a step would inherit the
    # niceness): the rest (alerts, the last log line, the exit's unmapping) yields the CPU
    # to runners starting now — fifty of them share a minute boundary on two cores.
    os.nice(10)
    _send_alerts(runner, settings, store, run.id)
    _count_disk_full(store, run.id)
    run = store.get_run_by_id(run.id)
    try:
        _append_log(
            log_file,
            f"{_ts()} INFO run finished dag={dag.name} run_id={run.run_id} status={status.label}\n",
        )
    except OSError as exc:  # the outcome is recorded; only the log line is missing
        print(f"dagloop: {describe_log_error(exc, log_file)}", file=sys.stderr)
    if run.error.startswith(_BEFORE_STEPS_ERRORS):
        # the run failed before any step: the reason (naming the secret or env entry) on
        # stderr, as for `_fail_before_steps` (Dagu prints it as its `Error:` line)
        print(f"dagloop: run {run.run_id} of {dag.name} failed: {run.error}", file=sys.stderr)
    if as_json:
        from controller.views.runs import run_details

        sys.stdout.write(json.dumps(run_details(store, run), ensure_ascii=False) + "\n")
    elif not quiet:
        print(f"{status.label} {dag.name} {run.run_id}")
    return _exit_code(status, run)


def _exit_code(status: RunStatus, run: RunRecord) -> int:
    """0 for a succeeded run (and one skipped by a DAG precondition), else 1."""
    if status == RunStatus.SUCCEEDED:
        return 0
    if status == RunStatus.ABORTED and run.error.startswith("precondition not met"):
        return 0
    return 1


def _note(log_file: Path, line: str) -> None:
    """One WARN line in the run log (a database outage seen by the runner)."""
    try:
        _append_log(log_file, f"{_ts()} WARN {line}\n")
    except OSError:
        pass  # the log disk is full as well: the line is lost, never the run


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


def _append_log(path: Path, line: str) -> None:
    """Append one line to the run log, with registered secrets masked."""
    if _masking:
        from controller.logs import redact

        line = redact(line)
    with open(path, "a", encoding="utf-8") as log:
        log.write(line)


# Whether `_register_secrets` registered values (controller.logs is imported only then: a
# run without secrets does not pay for `logging`).
_masking = False


def _register_secrets(params: list[tuple[str, str]], settings: Any) -> None:
    """Mask secret-named param values in every log line this process writes."""
    from controller.engine.runparams import secret_values

    global _masking
    values = secret_values(params, tuple(settings.secret_patterns))
    if values:
        from controller.logs import add_secret

        for value in values.values():
            add_secret(value)
        _masking = True


def _register_dag_secrets(values: Iterable[str]) -> None:
    """Mask the DAG's resolved `secrets:` in the lines this process still writes."""
    global _masking
    values = [v for v in values if v]
    if values:
        from controller.logs import add_secret

        for value in values:
            add_secret(value)
        _masking = True


def _fail_before_steps(store: Store, run: RunRecord, dag: Any, error: str, as_json: bool) -> int:
    """Record `run` failed with `error` before any step ran; print one line; exit code 1."""
    from controller.diskfull import mentions_enospc

    store.update_run(run.id, status=RunStatus.FAILED, finished_at=time.time(), error=error)
    if mentions_enospc(error):
        store.record_error("disk_full")
    print(f"dagloop: run {run.run_id} of {dag.name} failed: {error}", file=sys.stderr)
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


def stored_params(params: list[tuple[str, str]], settings: Any) -> list[str]:
    """`NAME=value` strings for `runs.params`, secret-named values masked."""
    from controller.engine.runparams import mask_params

    return mask_params(params, tuple(settings.secret_patterns))


def _send_alerts(runner: Any, settings: Any, store: Store, run_row: int) -> None:
    """Alert mails of the finished run; failures become notes on the run, never its status."""
    spec = runner.dag.spec
    on = spec.mail_on
    if not (
        (on is not None and (on.failure or on.success)) or any(s.mail_on_error for s in spec.steps)
    ):
        return
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
    if notes:
        store.update_run(run.id, notes="\n".join(notes))


def _ts() -> str:
    return utc_text(time.time())
