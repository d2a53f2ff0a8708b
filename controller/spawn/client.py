"""The controller's side of the fork-server: `ForkServer` starts it, hands it launches and
prepared runners, and tracks what it forked as `Dispatch` handles.

`launch()` only writes the request and returns a `Dispatch` at once (no wait for the fork); a
reader thread fills in the pid and exit code from the server's answers and calls `on_exit` (the
loop's or the worker's doorbell) when a runner exits or the server dies. If the server is gone,
`launch()` raises `ForkServerUnavailable` and the caller (`controller.spawn.runner_process`)
spawns the runner with `subprocess.Popen`; the next launch starts a new server. After
`MAX_FAILED_STARTS` deaths without a fork the server is left alone for `DISABLE_SECONDS`.

The server is started by module name (`controller.spawn.protocol.SERVER_MODULE`): this module
imports neither the server nor the engine, so the control loop can hold it.

Callers: `controller.loop.controller` and `controller.cluster.worker` (start, close),
`controller.loop.apply` (warm, prepare, flush) and `controller.spawn.runner_process` (launch).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO

from controller.spawn.protocol import (
    EXITED,
    FAILED,
    READY,
    SERVER_MODULE,
    STARTED,
    encode_request,
    env_overrides,
)

log = logging.getLogger("dagloop.controller")

__all__ = ["Dispatch", "ForkServer", "ForkServerUnavailable"]

# Crash-loop guard: after this many server deaths without a single successful fork, the
# applier spawns with Popen for DISABLE_SECONDS before trying a server again.
MAX_FAILED_STARTS = 3
DISABLE_SECONDS = 60.0

REQUEST_BUFFER_BYTES = 256 * 1024  # launch requests held until `ForkServer.flush`


class ForkServerUnavailable(Exception):
    """The fork-server cannot take a request now (dead, disabled or its pipe is broken)."""


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
            [self.executable, "-m", SERVER_MODULE, "--parent", str(os.getpid())],
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
        log.info("fork-server started", extra={"pid": self.proc.pid})

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
            proc.stdin.write(encode_request(request))
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
            proc.stdin.write(encode_request(request))
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
            proc.stdin.write(encode_request(request))
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
            facts = {"deaths": MAX_FAILED_STARTS, "disabled_seconds": DISABLE_SECONDS}
            log.error("fork-server keeps dying; spawning runners directly", extra=facts)
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
        if kind == READY:
            self.ready.set()
        elif kind == STARTED and len(parts) == 4:
            seq, pid = int(parts[1]), int(parts[2])
            with self._lock:
                d = self._pending.pop(seq, None)
                if d is not None:
                    d.pid = pid
                    d.start_ticks = None if parts[3] == "-" else float(parts[3])
                    self._by_pid[pid] = d
                    d._forked.set()
            self._forked_since_start = True
        elif kind == FAILED and len(parts) >= 2:
            with self._lock:
                d = self._pending.pop(int(parts[1]), None)
            if d is not None:
                log.warning("fork-server could not fork", extra={"error": " ".join(parts[2:])})
                d.abandoned = True
                d._done.set()
                self.on_exit()
        elif kind == EXITED and len(parts) == 3:
            with self._lock:
                d = self._by_pid.pop(int(parts[1]), None)
            if d is not None:
                d._exited(int(parts[2]))
            self.on_exit()
