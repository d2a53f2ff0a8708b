"""What a process forked by the fork-server does: become a detached runner and start its run.

A launched child (`run_launched`):

- calls `os.setsid()` (its own session, as `start_new_session=True` did: killing the
  controller or the fork-server, even with SIGKILL, leaves it running; `PR_SET_PDEATHSIG` is
  cleared by fork), resets the signal handlers and mask to those of a fresh interpreter;
- puts /dev/null on stdin and stdout and the run's `runner.err` on stderr, closes every other
  descriptor of the server, applies the request's environment and cwd, reseeds `random`;
- starts exactly the run `dagloop start -q --run-id ID [-c CONFIG] FILE` would
  (`controller.engine.start.start`, so the claim of the QUEUED row stays the runner's atomic
  claim: a second runner for the same row exits 1) and `os._exit`s with its code.

A prepared child (`run_prepared`) detaches the same way, does the start-up work of a runner
of its file before the run exists (`controller.engine.start.prepare`), and waits on a pipe for
its launch request (then runs it as above) or EOF (then exits 0, having written nothing).

The warmer child (`run_warmer`) loads DAG snapshots as a runner would, so the spec cache is
warm for the runners forked later.

Callers: `controller.spawn.server` only, in its forked children (and `set_pdeathsig` for
itself). The engine is imported on first use: the server imports it in its preload.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from controller.process import prctl
from controller.spawn.protocol import parse_start_argv

if TYPE_CHECKING:
    from controller.engine.start import Prepared, StartOptions
    from model.config import Settings

__all__ = [
    "RUNNER_COMM",
    "run_launched",
    "run_prepared",
    "run_warmer",
    "runner_settings",
    "set_pdeathsig",
    "start_options",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
RUNNER_COMM = b"dagloop-runner"  # the children's name in ps/top (their argv stays the server's)
USAGE_EXIT = 2  # as argparse's for arguments `dagloop start` would not take


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (EOF on stdin is
    the other guard)."""
    prctl(_PR_SET_PDEATHSIG, sig)


def runner_settings(config: str | None) -> Settings:
    """The settings a runner started with `-c CONFIG` (None: none) loads."""
    from model.config import load_settings

    return load_settings(config_file=None if config is None else Path(config))


def start_options(argv: object) -> StartOptions | None:
    """The options `dagloop start` takes from a runner's arguments (`start_argv`'s shape),
    without argparse (in a forked child it costs ~1 ms, mostly page faults); None for any
    other arguments."""
    from controller.engine.start import StartOptions

    args = parse_start_argv(argv)
    if args is None:
        return None
    return StartOptions(dag=args.file, run_id=args.run_id, quiet=True, config=args.config)


# ----------------------------------------------------------------------------- launched


def run_launched(req: Mapping[str, object]) -> NoReturn:
    """In the forked child: become a detached runner and start the run; never returns."""
    try:
        _detach(req, err_path=str(req["err"]))
    except BaseException:
        import traceback

        traceback.print_exc()  # to runner.err once it is stderr, else the server's
        os._exit(1)
    _start_run(req)


def run_prepared(req: Mapping[str, object], file: str, text: str, go: int) -> NoReturn:
    """In a prepared child: detach, do the start-up work of a runner of `file` with the
    snapshot `text` (settings, store, spec), then wait on `go` for its launch request (the
    server writes it when the controller launches a run of `file`), or EOF (not needed:
    exit 0, having written nothing)."""
    prepared = None
    try:
        _detach(req, err_path=None, keep=go)
        from controller.engine.start import prepare

        raw = req.get("config")
        config = None if raw is None else str(raw)
        prepared = prepare(file, text, settings=runner_settings(config), config=config)
    except BaseException:  # a warm-up only: the launch takes the ordinary path
        pass
    launch = _read_request(go)
    if launch is None:
        if prepared is not None and prepared.logs_ahead is not None:
            import shutil

            shutil.rmtree(prepared.logs_ahead, ignore_errors=True)
        os._exit(0)  # its store is left as is: nothing is written
    _start_run(launch, prepared, redirect=True)


def _start_run(
    req: Mapping[str, object], prepared: Prepared | None = None, *, redirect: bool = False
) -> NoReturn:
    """In a detached child: start the request's run and `os._exit` with its code; with
    `redirect` (a prepared child) stderr goes to the run's `runner.err` first."""
    code = 1
    try:
        if redirect:
            if prepared is not None and prepared.logs_ahead is not None:
                from controller.runlogs import adopt_logs_ahead

                adopt_logs_ahead(prepared.logs_ahead, Path(str(req["err"])).parent)
                prepared.logs_ahead = None
            _redirect_stderr(str(req["err"]))
        argv = req["argv"]
        assert isinstance(argv, list)
        sys.argv = [sys.executable, "-m", "controller", *argv]
        code = _start(argv, prepared)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    os._exit(code)


def _start(argv: list[object], prepared: Prepared | None) -> int:
    """`dagloop start` of `argv`, with what `prepared` set up if it fits; the exit code."""
    from controller.engine.start import start
    from model.config import ConfigError

    opts = start_options(argv)
    if opts is None:  # the client sends only `start_argv`'s shape
        print(f"dagloop forkserver: not a runner's arguments: {argv!r}", file=sys.stderr)
        return USAGE_EXIT
    if prepared is not None and prepared.fits(opts):
        settings = prepared.settings
    else:
        try:
            settings = runner_settings(opts.config)
        except ConfigError as exc:
            print(f"dagloop start: {exc}", file=sys.stderr)
            return 1
    try:
        return start(opts, settings=settings, prepared=prepared)
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------------- detaching


def _detach(req: Mapping[str, object], *, err_path: str | None, keep: int = -1) -> None:
    """In a forked child: leave the server's session, signals, descriptors (all but `keep`),
    environment and directory for those of a runner started by `req`; stderr goes to
    `err_path` (None: /dev/null until `_redirect_stderr`)."""
    os.setsid()
    prctl(_PR_SET_NAME, RUNNER_COMM)
    _reset_signals()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    if err_path is None:
        os.dup2(devnull, 2)
    else:
        _redirect_stderr(err_path)
    # The server's request and reply pipes, its wake-up pipe and anything else it held.
    if keep < 0:
        os.closerange(3, 1 << 20)
    else:
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
    env = req.get("env") or {}
    assert isinstance(env, dict)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(str(req["cwd"]))
    import random

    random.seed()


def _reset_signals() -> None:
    """The signal handlers and mask of a fresh interpreter, not the server's."""
    signal.set_wakeup_fd(-1)
    for sig in (
        signal.SIGCHLD,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
    ):
        signal.signal(sig, signal.SIG_DFL)
    # What a fresh interpreter installs: KeyboardInterrupt on SIGINT, SIGPIPE ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _redirect_stderr(err_path: str) -> None:
    """Append stderr to the run's `runner.err` (its directory made here, not by the loop)."""
    os.makedirs(os.path.dirname(err_path), exist_ok=True)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(err, 2)
    os.close(err)


def _read_request(fd: int) -> dict[str, object] | None:
    """One JSON line from `fd`; None on EOF (or anything unreadable)."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            data += chunk
        req = json.loads(data)
    except (OSError, ValueError):
        return None
    return req if isinstance(req, dict) else None


# ----------------------------------------------------------------------------- warmer


def run_warmer(items: list[tuple[str, str]], config: str | None) -> NoReturn:
    """In the warmer child: load every (file, snapshot) as `dagloop start --run-id` would."""
    try:
        # Unlike a runner, the warmer is only the server's helper: it dies with it.
        set_pdeathsig(signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.nice(10)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 1 << 20)
        from controller.dagfile import find_dag_file
        from controller.engine import launch

        # As the runners get them: `-c CONFIG` if the controller has one, else the env.
        settings = runner_settings(config)
        for file, text in items:
            try:
                path = find_dag_file(file, settings.dags_dir)
                launch.load(path, settings, text=text or None)
            except Exception:  # an invalid or vanished DAG: its runner reports it
                continue
    except BaseException:
        pass
    os._exit(0)
