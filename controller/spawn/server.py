"""The fork-server: launches runners by `fork()` from a warm helper instead of a new interpreter.

A runner started as `python -m controller start -q --run-id ID FILE` pays ~135 ms of interpreter
start-up and imports before its first step; fifty of them at one minute boundary on two cores
queue for seconds. The fork-server is a small single-threaded helper process that the control
loop (or a worker) starts once (`python -m controller.spawn.server --parent PID`), with the
runner's modules imported (not pydantic: a cached DAG never needs it). It reads requests on its
stdin (`controller.spawn.protocol`) and forks one runner per launch; what a child does is
`controller.spawn.child`.

Prepared runners: a prepare request (sent by the loop shortly before a start instant, for the
DAGs starting then) forks one child per DAG file that detaches, does the start-up work of its
runner before the run exists (settings, store, the spec of that snapshot) and waits on a pipe.
A launch of that file with the same env, cwd and config is written to that pipe instead of
forking, so at the minute boundary only the claim and the first step are left; the runner uses
the prepared spec only if its row's snapshot is the same text, else it loads the row's. A child
not launched within `expire_seconds`, replaced by a newer prepare, or whose server exits or dies
gets EOF and exits 0, having written nothing; the server reaps it without reporting it.

The server answers on its stdout (`R` ready, `S` forked, `F` fork failed, `X` exited: a runner
is reaped at once on SIGCHLD, so no zombie stays). It exits on EOF of its stdin (the controller
closed the pipe or died) and, as a second guard, on its parent's death (`PR_SET_PDEATHSIG`); its
runners are not affected.

Started only by `controller.spawn.client.ForkServer.start`, as `python -m` of this module.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping

from controller.spawn.child import run_launched, run_prepared, run_warmer, set_pdeathsig
from controller.spawn.protocol import EXITED, FAILED, READY, STARTED, parse_start_argv

__all__ = ["PRELOAD", "main", "serve"]

# What a runner of a cached DAG imports (`python -X importtime -m controller start` without
# pydantic or yaml, and without the command line: a child starts its run through the engine):
# imported once here, so a forked child imports nothing.
PRELOAD = (
    "controller.engine.expand",
    "controller.engine.launch",
    "controller.engine.runner",
    "controller.engine.runparams",
    "controller.engine.start",
    "controller.liveness",
    "controller.process",
    "controller.runlogs",
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


def _warm_caches() -> None:
    """Fill the per-process caches every runner fills before its first step (compiled
    regular expressions of the secret-name patterns of the settings, of step names), so each
    forked child inherits them instead of building them again. Pure calls: nothing is
    written."""
    try:
        from controller.engine.expand import filtered_os_env
        from controller.runlogs import safe_name
        from controller.spawn.child import runner_settings

        filtered_os_env(os.environ)
        safe_name("warm up")
        # fnmatch caches each compiled pattern: the runners match their env against these.
        settings = runner_settings(None)
        patterns = tuple(settings.secret_patterns)
        filtered_os_env({"DAGU_WARM_UP": ""}, secret_patterns=patterns)
        if settings.database_url:  # the runners' store is PostgreSQL: psycopg once, here
            import controller.store.pg  # noqa: F401
    except Exception:  # a warm-up only
        pass


def _write(fd: int, line: str) -> None:
    data = (line + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _start_ticks(pid: int) -> str:
    from controller.process import proc_start_ticks

    ticks = proc_start_ticks(pid)
    return "-" if ticks is None else repr(ticks)


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
            run_warmer(items, self.config)
        self.pid = pid


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

    `prepare` forks one child per (file, snapshot) (`controller.spawn.child.run_prepared`);
    `take` hands a launch request to the matching child instead of forking (None: fork as
    usual); unused children get EOF when they expire, are replaced, or the server exits, and
    then exit 0. Their exits are not reported to the controller, which never knew them.
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
                run_prepared(req, str(file), str(text), go_r)
            os.close(go_r)
            self.ready[str(file)] = _Prepared(pid, go_w, req, expires_at)
            self.idle.add(pid)

    def take(self, req: Mapping[str, object]) -> _Prepared | None:
        """Hand `req` (a launch) to the child prepared for its DAG file with the same config,
        environment and directory; None if there is none, or it is gone (fork as usual)."""
        args = parse_start_argv(req.get("argv"))
        if args is None:
            return None
        config = args.config
        child = self.ready.pop(args.file, None)
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
            _write(out, f"{EXITED} {pid} {os.waitstatus_to_exitcode(status)}")
        except OSError:
            pass  # the controller is gone; keep reaping until our own exit


def serve(parent_pid: int, *, stdin: int = 0, stdout: int = 1) -> int:
    """The server loop: fork a runner per request line until EOF; returns the exit code."""
    set_pdeathsig(signal.SIGKILL)
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
    _write(stdout, READY)
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
        _write(out, f"{STARTED} {seq} {child.pid} {child.ticks}")
        return
    try:
        pid = os.fork()
    except OSError as exc:
        _write(out, f"{FAILED} {seq} {exc}".replace("\n", " "))
        return
    if pid == 0:
        run_launched(req)
    _write(out, f"{STARTED} {seq} {pid} {_start_ticks(pid)}")


def main(argv: list[str] | None = None) -> int:
    """`python -m controller.spawn.server --parent PID`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--parent" or not args[1].isdigit():
        print("usage: python -m controller.spawn.server --parent PID", file=sys.stderr)
        return 2
    try:
        return serve(int(args[1]))
    except BrokenPipeError:
        return 0  # the controller went away while we answered


if __name__ == "__main__":
    raise SystemExit(main())
