"""The fork-server: launches runners by `fork()` from a warm helper instead of a new interpreter.

A runner started as `python -m controller start -q --run-id ID FILE` pays ~135 ms of interpreter
start-up and imports before its first step; fifty of them at one minute boundary on two cores
queue for seconds. The fork-server is a small single-threaded helper process that the control
loop starts once (`python -m controller.spawn.forkserver --parent PID`), with the runner's modules
imported (not pydantic: a cached DAG never needs it). It reads launch requests, one JSON line
each, on its stdin and forks one runner per request. The child:

- calls `os.setsid()` (its own session, as `start_new_session=True` did: killing the
  controller or the fork-server, even with SIGKILL, leaves it running; `PR_SET_PDEATHSIG` is
  cleared by fork), resets the signal handlers and mask to those of a fresh interpreter;
- puts /dev/null on stdin and stdout and `logs/<dag>/<run_id>/runner.err` on stderr, closes
  every other descriptor of the server, applies the request's environment and cwd, reseeds
  `random`;
- runs exactly `dagloop start -q --run-id ID [-c CONFIG] FILE` (`controller.cli.main` with
  those arguments, so the claim of the QUEUED row stays the runner's atomic claim: a second
  runner for the same row exits 1) and `os._exit`s with its code.

Prepared runners: a request `{"prepare": [[file, snapshot], ...], "env", "cwd", "config",
"expire_seconds"}` (sent by the loop shortly before a start instant, for the DAGs starting then)
forks one child per DAG file that detaches as above, does the start-up work of its runner
before the run exists (settings, store, the spec of that snapshot: `commands.start.prepare`)
and waits on a pipe. A launch of that file with the same env, cwd and config is written to
that pipe instead of forking, so at the minute boundary only the claim and the first step are
left; the runner uses the prepared spec only if its row's snapshot is the same text, else it
loads the row's. A child not launched within `expire_seconds`, replaced by a newer prepare, or
whose server exits or dies gets EOF and exits 0, having written nothing; the server reaps it
without reporting it.

The server answers on its stdout, one line per event: `R` (ready, imports done),
`S <seq> <pid> <start ticks>` (request `seq` forked, or handed to a prepared child),
`F <seq> <error>` (fork failed: not dispatched),
`X <pid> <exit code>` (a runner exited; reaped at once on SIGCHLD, so no zombie stays). It
exits on EOF of its stdin (the controller closed the pipe or died) and, as a second guard,
on its parent's death (`PR_SET_PDEATHSIG`); its runners are not affected.

The client side (`ForkServer`, `Dispatch`) lives in the controller: `launch()` only writes the
request and returns a `Dispatch` handle at once (no wait for the fork); a reader thread fills
in the pid and exit code and rings the loop's doorbell when a runner exits. If the server is
gone, `launch()` raises `ForkServerUnavailable` and the applier falls back to spawning the
runner with `subprocess.Popen`; the next launch starts a new server.

Callers: `controller.loop.controller` (start/stop), `controller.loop.apply` (launch, prepare);
`python -m
controller.spawn.forkserver` is only ever started by `ForkServer.start`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

from controller.process import prctl

if TYPE_CHECKING:
    from controller.commands.start import Prepared

log = logging.getLogger("dagloop.controller")

__all__ = [
    "Dispatch",
    "ForkServer",
    "ForkServerUnavailable",
    "env_overrides",
    "main",
    "start_argv",
]

# Crash-loop guard: after this many server deaths without a single successful fork, the
# applier spawns with Popen for DISABLE_SECONDS before trying a server again.
MAX_FAILED_STARTS = 3
DISABLE_SECONDS = 60.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
REQUEST_BUFFER_BYTES = 256 * 1024  # launch requests held until `ForkServer.flush`
RUNNER_COMM = b"dagloop-runner"  # the children's name in ps/top (their argv stays the server's)


class ForkServerUnavailable(Exception):
    """The fork-server cannot take a request now (dead, disabled or its pipe is broken)."""


def start_argv(run_id: str, file: str, config_file: str | None) -> list[str]:
    """The `dagloop` arguments of a runner for a QUEUED row (the Popen path prefixes them with
    `python -m controller`; the fork-server passes them to `controller.cli.main`)."""
    argv = ["start", "-q", "--run-id", run_id]
    if config_file is not None:
        argv += ["-c", config_file]
    argv.append(file)
    return argv


def env_overrides(base: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str | None]:
    """What turns `base` into `env`: changed or new values, and None for removed names."""
    out: dict[str, str | None] = {k: v for k, v in env.items() if base.get(k) != v}
    out.update({k: None for k in base if k not in env})
    return out


# =========================================================================== server side


# What a runner of a cached DAG imports (`python -X importtime -m controller start` without
# pydantic or yaml): imported once here, so a forked child imports nothing.
PRELOAD = (
    "controller.cli",
    "controller.commands.start",
    "controller.engine.expand",
    "controller.engine.launch",
    "controller.liveness",
    "controller.process",
    "controller.engine.runner",
    "controller.engine.runparams",
    "controller.secrets",
    "controller.store.store",
    "model.config",
    "model.params",
    "model.speccache",
    "model.status",
)


def _preload() -> None:
    """Import `PRELOAD` (a module missing here is imported by the child on demand)."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a warm-up only: the child's own import reports a real problem
            pass


# The `dagloop start` parser, built once here (as `controller.cli.main` builds it): building
# it costs a child ~1.5 ms of CPU (gettext look-ups, formatter set-up, page faults), and fifty
# children at one minute boundary share two cores. None if the warm-up failed.
_start_parser: argparse.ArgumentParser | None = None
# Its namespace for `start FILE` (every default), the template of `_fast_start_args`.
_start_defaults: dict[str, object] | None = None


def _warm_caches() -> None:
    """Fill the per-process caches every runner fills before its first step (the parser of
    `dagloop start`, compiled regular expressions of argparse, of the secret-name patterns
    of the settings, of step names), so each forked child inherits them instead of building
    them again. Pure calls: nothing is written."""
    global _start_parser, _start_defaults
    try:
        from controller.cli import COMMANDS
        from controller.commands import start
        from controller.engine.expand import filtered_os_env
        from controller.engine.graph import safe_name

        parser = argparse.ArgumentParser(prog="dagloop start", description=COMMANDS["start"][1])
        start.configure(parser)
        parser.parse_args(["-q", "--run-id", "warm-up", "-c", "c.yaml", "f.yaml"])
        _start_parser = parser
        _start_defaults = vars(parser.parse_args(["f.yaml"]))
        filtered_os_env(os.environ)
        safe_name("warm up")
        from model.config import load_settings

        # fnmatch caches each compiled pattern: the runners match their env against these.
        settings = load_settings()
        patterns = tuple(settings.secret_patterns)
        filtered_os_env({"DAGU_WARM_UP": ""}, secret_patterns=patterns)
        if settings.database_url:  # the runners' store is PostgreSQL: psycopg once, here
            import controller.store.pg  # noqa: F401
    except Exception:  # a warm-up only
        pass


def fast_start_args(
    argv: list[str], defaults: dict[str, object] | None
) -> argparse.Namespace | None:
    """The namespace argparse gives for exactly the shape `start_argv` makes
    (`start -q --run-id ID [-c CONFIG] FILE`), built from `defaults` without parsing (in a
    forked child `parse_args` costs ~0.8 ms, mostly page faults); None for any other shape
    or a value argparse could read as an option, which then goes through argparse."""
    if defaults is None or len(argv) not in (5, 7) or argv[:3] != ["start", "-q", "--run-id"]:
        return None
    config = None
    if len(argv) == 7:
        if argv[4] != "-c":
            return None
        config = argv[5]
    run_id, file = argv[3], argv[-1]
    if any(not v or v.startswith("-") for v in (run_id, file, config or "x")):
        return None
    return argparse.Namespace(
        **{**defaults, "quiet": True, "run_id": run_id, "config": config, "dag": file}
    )


def _run_start(argv: list[str], prepared: Prepared | None = None) -> int:
    """`controller.cli.main(argv)`, with the prebuilt parser for `start` (the runners' verb)
    and, in a prepared runner, what it set up before its run existed."""
    from controller.cli import main as cli_main

    parser = _start_parser
    if parser is None or not argv or argv[0] != "start":
        return cli_main(argv)
    from controller.commands import start

    namespace = fast_start_args(argv, _start_defaults)
    if namespace is None:
        try:
            namespace = parser.parse_args(argv[1:])
        except SystemExit as exc:  # as cli.main: argparse exits 2 on usage errors
            return int(exc.code or 0)
    try:
        return start.run(namespace, prepared=prepared)
    except KeyboardInterrupt:
        return 130


def _set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (EOF on stdin is
    the other guard)."""
    prctl(_PR_SET_PDEATHSIG, sig)


def _write(fd: int, line: str) -> None:
    data = (line + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _start_ticks(pid: int) -> str:
    from controller.process import proc_start_ticks

    ticks = proc_start_ticks(pid)
    return "-" if ticks is None else repr(ticks)


def _detach(req: Mapping[str, object], *, err_path: str | None, keep: int = -1) -> None:
    """In a forked child: leave the server's session, signals, descriptors (all but `keep`),
    environment and directory for those of a runner started by `req`; stderr goes to
    `err_path` (None: /dev/null until `_redirect_stderr`)."""
    os.setsid()
    prctl(_PR_SET_NAME, RUNNER_COMM)
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


def _redirect_stderr(err_path: str) -> None:
    """Append stderr to the run's `runner.err` (its directory made here, not by the loop)."""
    os.makedirs(os.path.dirname(err_path), exist_ok=True)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(err, 2)
    os.close(err)


def _start_run(
    req: Mapping[str, object], prepared: Prepared | None = None, *, redirect: bool = False
) -> NoReturn:
    """In a detached child: run the request's `dagloop start` and `os._exit` with its code;
    with `redirect` (a prepared child) stderr goes to the run's `runner.err` first."""
    code = 1
    try:
        if redirect:
            if prepared is not None and prepared.logs_ahead is not None:
                from controller.engine import launch

                launch.adopt_logs_ahead(prepared.logs_ahead, Path(str(req["err"])).parent)
                prepared.logs_ahead = None
            _redirect_stderr(str(req["err"]))
        argv = req["argv"]
        assert isinstance(argv, list)
        sys.argv = [sys.executable, "-m", "controller", *argv]
        code = _run_start([str(a) for a in argv], prepared)
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


def _run_child(req: dict[str, object]) -> NoReturn:
    """In the forked child: become a detached runner and run `dagloop start`; never returns."""
    try:
        _detach(req, err_path=str(req["err"]))
    except BaseException:
        import traceback

        traceback.print_exc()  # to runner.err once it is stderr, else the server's
        os._exit(1)
    _start_run(req)


def _run_prepared(req: Mapping[str, object], file: str, text: str, go: int) -> NoReturn:
    """In a prepared child: detach, do the start-up work of a runner of `file` with the
    snapshot `text` (settings, store, spec), then wait on `go` for its launch request (the
    server writes it when the controller launches a run of `file`), or EOF (not needed:
    exit 0, having written nothing)."""
    prepared = None
    try:
        _detach(req, err_path=None, keep=go)
        from controller.commands import start

        config = req.get("config")
        prepared = start.prepare(file, text, config=None if config is None else str(config))
    except BaseException:  # a warm-up only: the launch takes the ordinary path
        pass
    launch = _read_request(go)
    if launch is None:
        if prepared is not None and prepared.logs_ahead is not None:
            import shutil

            shutil.rmtree(prepared.logs_ahead, ignore_errors=True)
        os._exit(0)
    _start_run(launch, prepared, redirect=True)


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


class _Warmer:
    """Fills the spec cache for DAGs the controller may launch, in a child process.

    A runner whose DAG snapshot misses the cache imports pydantic and validates (~10x the
    cost of a hit); right after the controller starts, or after an edit, every DAG would miss
    at its first fire. The warmer child (nice 10, one at a time; a request arriving meanwhile
    waits for it) loads each snapshot exactly as a runner does, so the runners forked at the
    minute boundary hit.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.queued: list[tuple[str, str]] = []
        self.config: str | None = None

    def request(self, items: list[tuple[str, str]], config: str | None) -> None:
        self.queued += items
        self.config = config
        if self.pid is None:
            self._start()

    def exited(self) -> None:
        self.pid = None
        if self.queued:
            self._start()

    def _start(self) -> None:
        items, self.queued = self.queued, []
        try:
            pid = os.fork()
        except OSError:
            return  # only a warm-up: the runners load what they need themselves
        if pid == 0:
            _run_warmer(items, self.config)
        self.pid = pid


def _run_warmer(items: list[tuple[str, str]], config: str | None) -> NoReturn:
    """In the warmer child: load every (file, snapshot) as `dagloop start --run-id` would."""
    try:
        # Unlike a runner, the warmer is only the server's helper: it dies with it.
        _set_pdeathsig(signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.nice(10)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 1 << 20)
        from controller.dagfile import find_dag_file
        from controller.engine import launch
        from model.config import load_settings

        # As the runners get them: `-c CONFIG` if the controller has one, else the env.
        settings = load_settings(config_file=Path(config) if config else None)
        for file, text in items:
            try:
                path = find_dag_file(file, settings.dags_dir)
                launch.load(path, settings, text=text or None)
            except Exception:  # an invalid or vanished DAG: its runner reports it
                continue
    except BaseException:
        pass
    os._exit(0)


class _Prepared:
    """A prepared child: its pid, the write end of its launch pipe, what it was prepared
    with (a launch must match it) and when it is closed unused (server's monotonic clock)."""

    def __init__(self, pid: int, go: int, req: Mapping[str, object], expires_at: float) -> None:
        self.pid = pid
        self.go = go
        self.env = req.get("env") or {}
        self.cwd = req.get("cwd")
        self.config = req.get("config")
        self.expires_at = expires_at
        self.ticks = _start_ticks(pid)


class _Pool:
    """Runners forked before their run exists, at most one per DAG file.

    `prepare` forks one child per (file, snapshot) (`_run_prepared`); `take` hands a launch
    request to the matching child instead of forking (None: fork as usual); unused children
    get EOF when they expire, are replaced, or the server exits, and then exit 0. Their exits
    are not reported to the controller, which never knew them.
    """

    def __init__(self) -> None:
        self.ready: dict[str, _Prepared] = {}  # by DAG file
        self.idle: set[int] = set()  # pids of children not (yet) handed a launch

    def prepare(self, req: Mapping[str, object]) -> None:
        now = time.monotonic()
        expires_at = now + float(req.get("expire_seconds", 10.0))  # type: ignore[arg-type]
        items = req["prepare"]
        assert isinstance(items, list)
        for file, text in items:
            self.drop(str(file))
            try:
                go_r, go_w = os.pipe2(os.O_CLOEXEC)
            except OSError:
                return
            try:
                pid = os.fork()
            except OSError:
                os.close(go_r)
                os.close(go_w)
                return  # only a head start: the launch forks as usual
            if pid == 0:
                _run_prepared(req, str(file), str(text), go_r)
            os.close(go_r)
            self.ready[str(file)] = _Prepared(pid, go_w, req, expires_at)
            self.idle.add(pid)

    def take(self, req: Mapping[str, object]) -> _Prepared | None:
        """Hand `req` (a launch) to the child prepared for its DAG file with the same config,
        environment and directory; None if there is none, or it is gone (fork as usual)."""
        argv = req.get("argv")
        if not isinstance(argv, list) or len(argv) not in (5, 7) or argv[0] != "start":
            return None
        config = argv[5] if len(argv) == 7 else None
        child = self.ready.pop(str(argv[-1]), None)
        if child is None:
            return None
        try:
            if time.monotonic() >= child.expires_at or (child.config, child.env, child.cwd) != (
                config,
                req.get("env") or {},
                req.get("cwd"),
            ):
                return None
            _write(child.go, json.dumps(req))
        except OSError:
            return None  # it died meanwhile
        finally:
            os.close(child.go)  # after the request, or instead of it: EOF
        self.idle.discard(child.pid)
        return child

    def drop(self, file: str) -> None:
        child = self.ready.pop(file, None)
        if child is not None:
            os.close(child.go)  # EOF: it exits

    def expire(self) -> float | None:
        """Close the children whose time passed; seconds until the next expiry, if any."""
        now = time.monotonic()
        for file in [f for f, c in self.ready.items() if c.expires_at <= now]:
            self.drop(file)
        return min((c.expires_at - now for c in self.ready.values()), default=None)

    def close(self) -> None:
        for file in list(self.ready):
            self.drop(file)


def _reap(out: int, warmer: _Warmer | None = None, pool: _Pool | None = None) -> None:
    """Collect every exited runner (no zombies) and report it."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if warmer is not None and pid == warmer.pid:
            warmer.exited()
            continue
        if pool is not None and pid in pool.idle:
            pool.idle.discard(pid)
            continue
        try:
            _write(out, f"X {pid} {os.waitstatus_to_exitcode(status)}")
        except OSError:
            pass  # the controller is gone; keep reaping until our own exit


def serve(parent_pid: int, *, stdin: int = 0, stdout: int = 1) -> int:
    """The server loop: fork a runner per request line until EOF; returns the exit code."""
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        return 0  # the controller died before prctl took effect
    # No process group games: the controller started us in our own session, so a terminal's
    # Ctrl-C reaches neither us nor our runners.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    _preload()
    _warm_caches()
    # Nothing may sit in Python's stdio buffers at fork, or every child would write it again.
    sys.stdout.flush()
    sys.stderr.flush()
    _write(stdout, "R")
    buf = b""
    warmer = _Warmer()
    pool = _Pool()
    while True:
        _reap(stdout, warmer, pool)
        expiry = pool.expire()
        try:
            timeout = 30.0 if expiry is None else min(30.0, expiry)
            ready, _, _ = select.select([stdin, wake_r], [], [], timeout)
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if stdin not in ready:
            continue
        data = os.read(stdin, 65536)
        if not data:
            break  # the controller closed the pipe or died
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                _fork_one(line, stdout, warmer, pool)
    pool.close()
    _reap(stdout, warmer, pool)
    return 0


def _fork_one(line: bytes, out: int, warmer: _Warmer, pool: _Pool) -> None:
    try:
        req = json.loads(line)
        if "warm" in req:
            config = req.get("config")
            warmer.request(
                [(str(f), str(t)) for f, t in req["warm"]], None if config is None else str(config)
            )
            return
        if "prepare" in req:
            pool.prepare(req)
            return
        seq = int(req["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        print(f"dagloop forkserver: bad request {line[:200]!r}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        return
    child = pool.take(req)
    if child is not None:
        _write(out, f"S {seq} {child.pid} {child.ticks}")
        return
    try:
        pid = os.fork()
    except OSError as exc:
        _write(out, f"F {seq} {exc}".replace("\n", " "))
        return
    if pid == 0:
        _run_child(req)
    _write(out, f"S {seq} {pid} {_start_ticks(pid)}")


def main(argv: list[str] | None = None) -> int:
    """`python -m controller.spawn.forkserver --parent PID`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--parent" or not args[1].isdigit():
        print("usage: python -m controller.spawn.forkserver --parent PID", file=sys.stderr)
        return 2
    try:
        return serve(int(args[1]))
    except BrokenPipeError:
        return 0  # the controller went away while we answered


# =========================================================================== client side


class Dispatch:
    """A runner handed to the fork-server: `pid` once forked, `poll()`/`wait()` like Popen.

    `abandoned` is set when the server died (or failed to fork) before reporting the fork: the
    request may never have run, so the applier forgets it and the next pass starts the run
    again (the runner's atomic claim makes a duplicate harmless).
    """

    def __init__(self, row: int) -> None:
        self.row = row
        self.pid: int | None = None
        self.start_ticks: float | None = None
        self.returncode: int | None = None
        self.abandoned = False
        self.orphaned = False  # forked, but the server died: exits are no longer reported
        self._done = threading.Event()
        self._forked = threading.Event()

    def poll(self) -> int | None:
        """The exit code once the runner exited, else None (also while not yet forked)."""
        if self.returncode is None and self.orphaned and self.pid is not None:
            from controller.process import pid_alive, proc_start_ticks

            same = self.start_ticks is None or proc_start_ticks(self.pid) == self.start_ticks
            if not (pid_alive(self.pid) and same):
                self._exited(-1)  # its real code went with the server; the store has the status
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the runner's exit; raises `subprocess.TimeoutExpired` after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None and not self.abandoned:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"runner of row {self.row}", timeout or 0.0)
            self._done.wait(0.1 if left is None else min(left, 0.1))
        return -1 if self.returncode is None else self.returncode

    def wait_forked(self, timeout: float) -> int | None:
        """The pid once the server reports the fork (waiting up to `timeout`), else None."""
        deadline = time.monotonic() + timeout
        while self.pid is None and not self.abandoned and time.monotonic() < deadline:
            self._forked.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
        return self.pid

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()


class ForkServer:
    """The controller's handle on its fork-server process (started lazily, restarted on need).

    `env` is the runner environment the server starts with (requests carry only differences);
    `on_exit` is called from the reader thread whenever a runner exits or the server dies (the
    loop rings its doorbell); `executable` is the Python that runs the server (and so the
    runners). Not thread-safe for `launch`: only the loop's thread launches.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        on_exit: Callable[[], None] = lambda: None,
        stderr: IO[bytes] | int | None = None,
        executable: str = sys.executable,
    ) -> None:
        self.env = dict(env)
        self.executable = executable
        self.on_exit = on_exit
        self.stderr = stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, Dispatch] = {}  # request seq -> not yet forked
        self._seq = 0
        self._by_pid: dict[int, Dispatch] = {}  # forked, not yet exited
        self._forked_since_start = False
        self._failed_starts = 0
        self._disabled_until = 0.0
        self.ready = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        """Whether the server process runs and its pipe is open."""
        return self.proc is not None and self.proc.poll() is None and self.proc.stdin is not None

    def start(self) -> None:
        """Start the server process (no wait for its imports: requests queue in the pipe)."""
        if self.alive:
            return
        self._forget_server()
        self.ready.clear()
        self.proc = subprocess.Popen(
            [self.executable, "-m", "controller.spawn.forkserver", "--parent", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            # Room for a pass's launches (~0.5 KiB each): with the default 8 KiB buffer the
            # first sixteen of fifty went out early, and their runners slowed the creation of
            # the other rows.
            bufsize=REQUEST_BUFFER_BYTES,
            env=self.env,
            start_new_session=True,
            close_fds=True,
        )
        self._forked_since_start = False
        self._reader = threading.Thread(
            target=self._read, args=(self.proc,), daemon=True, name="forkserver-reader"
        )
        self._reader.start()
        log.info("fork-server started (pid %d)", self.proc.pid)

    def close(self, timeout: float = 5.0) -> None:
        """Close the request pipe (the server exits on EOF) and collect the server; its
        runners keep running."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        self._forget_server()
        self.proc = None

    # ------------------------------------------------------------------ launch

    def launch(
        self,
        *,
        row: int,
        argv: list[str],
        err_path: str,
        env: Mapping[str, str],
        cwd: str,
        flush: bool = True,
    ) -> Dispatch:
        """Hand one runner to the server without waiting for the fork; its `Dispatch`.

        Starts a server first if there is none (or it died). Raises `ForkServerUnavailable`
        when the server cannot be used now; the caller then spawns the runner itself. With
        `flush=False` the request waits in the pipe's buffer until `flush()` (the applier
        sends a pass's launches together, after creating their rows).
        """
        if time.monotonic() < self._disabled_until:
            raise ForkServerUnavailable("disabled after repeated failures")
        if not self.alive:
            if self.proc is not None:
                self._note_death()
                if time.monotonic() < self._disabled_until:
                    raise ForkServerUnavailable("disabled after repeated failures")
            try:
                self.start()
            except OSError as exc:
                raise ForkServerUnavailable(f"cannot start: {exc}") from exc
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        self._seq += 1
        seq = self._seq
        request = {
            "seq": seq,
            "row": row,
            "argv": argv,
            "err": err_path,
            "env": env_overrides(self.env, env),
            "cwd": cwd,
        }
        dispatch = Dispatch(row)
        with self._lock:
            self._pending[seq] = dispatch
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            if flush:
                proc.stdin.flush()
        except (OSError, ValueError) as exc:  # EPIPE: it died; ValueError: pipe closed
            with self._lock:
                self._pending.pop(seq, None)
            raise ForkServerUnavailable(f"request pipe: {exc}") from exc
        return dispatch

    def flush(self) -> None:
        """Send the buffered requests. If the server is gone they are abandoned (their runs
        are started again by a later pass) and `on_exit` rings the loop."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.flush()
        except (OSError, ValueError):
            with self._lock:
                pending, self._pending = self._pending, {}
            for d in pending.values():
                d.abandoned = True
                d._done.set()
            self.on_exit()

    def warm(self, items: list[tuple[str, str]], *, config_file: str | None = None) -> None:
        """Ask the server to fill the spec cache for (DAG file, snapshot text) pairs, in the
        background; best effort (ignored when the server is not running)."""
        proc = self.proc
        if not items or proc is None or proc.stdin is None or not self.alive:
            return
        try:
            request = {"warm": items, "config": config_file}
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def prepare(
        self,
        items: list[tuple[str, str]],
        *,
        env: Mapping[str, str],
        cwd: str,
        config_file: str | None = None,
        expire_seconds: float,
    ) -> None:
        """Ask the server to fork, ahead of a start instant, one runner per (DAG file,
        snapshot text) that sets itself up and waits; a `launch` of that file within
        `expire_seconds` (with the same env, cwd and config) is handed to it instead of a
        fork, and a child left unused exits. Best effort (ignored when the server is not
        running)."""
        proc = self.proc
        if not items or proc is None or proc.stdin is None or not self.alive:
            return
        request = {
            "prepare": items,
            "env": env_overrides(self.env, env),
            "cwd": cwd,
            "config": config_file,
            "expire_seconds": expire_seconds,
        }
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------------ internals

    def _note_death(self) -> None:
        """Count a server death; too many without a fork disable the server for a while."""
        if self._forked_since_start:
            self._failed_starts = 0
        else:
            self._failed_starts += 1
        if self._failed_starts >= MAX_FAILED_STARTS:
            self._disabled_until = time.monotonic() + DISABLE_SECONDS
            self._failed_starts = 0
            log.error(
                "fork-server died %d times without launching; spawning runners directly for %.0f s",
                MAX_FAILED_STARTS,
                DISABLE_SECONDS,
            )
        else:
            log.warning("fork-server is gone; falling back to spawning, restarting it")
        if self.proc is not None:
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self._forget_server()
        self.proc = None

    def _forget_server(self) -> None:
        """The server is gone: unforked requests are abandoned, forked runners orphaned."""
        with self._lock:
            pending, self._pending = self._pending, {}
            forked, self._by_pid = self._by_pid, {}
        for d in pending.values():
            d.abandoned = True
            d._done.set()
        for d in forked.values():
            d.orphaned = True

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Reader thread: apply the server's answers until EOF."""
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                self._answer(raw.decode(errors="replace").split())
        except (OSError, ValueError):
            pass
        if self.proc is proc:
            self._forget_server()
        self.on_exit()

    def _answer(self, parts: list[str]) -> None:
        if not parts:
            return
        kind = parts[0]
        if kind == "R":
            self.ready.set()
        elif kind == "S" and len(parts) == 4:
            seq, pid = int(parts[1]), int(parts[2])
            with self._lock:
                d = self._pending.pop(seq, None)
                if d is not None:
                    d.pid = pid
                    d.start_ticks = None if parts[3] == "-" else float(parts[3])
                    self._by_pid[pid] = d
                    d._forked.set()
            self._forked_since_start = True
        elif kind == "F" and len(parts) >= 2:
            with self._lock:
                d = self._pending.pop(int(parts[1]), None)
            if d is not None:
                log.warning("fork-server could not fork: %s", " ".join(parts[2:]))
                d.abandoned = True
                d._done.set()
                self.on_exit()
        elif kind == "X" and len(parts) == 3:
            with self._lock:
                d = self._by_pid.pop(int(parts[1]), None)
            if d is not None:
                d._exited(int(parts[2]))
            self.on_exit()


if __name__ == "__main__":
    raise SystemExit(main())
