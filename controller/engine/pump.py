"""The output pump: moves what steps write from their pipes into their log files.

Owns a step's log files (`log_paths`, `precreate_logs`, `open_logs`, `close_logs`): `.out` and
`.err`, or one `.log` for both streams under `logOutput: merged`; the end of the stderr of the
step's current execution, kept in memory for its error (`recent_stderr`) and the summary; the
per-step log cap (`settings.max_step_log_bytes`,
issue 8 #24) with its truncation marker, `output:` capture (up to `maxOutputSize`; stdout
only, merged or not, as in Dagu), the step's `stdout:`/`stderr:` copies (one per stream,
merged or not), and a sub-DAG's JSON result on stdout.
A failed log write (ENOSPC) fails the execution (`Node.log_error`), never the runner.

Called by the runner (`controller.engine.runner`): `Pump.drain` when the selector reports a pipe
readable, `Pump.drain_after_exit` when a step's process exited; `CaptureWriter` is the stdout
of a Python executor.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import selectors
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from controller.diskfull import ENOSPC_TEXT, describe_os_error
from controller.engine.graph import Node, Proc
from controller.runlogs import output_files, safe_name

if TYPE_CHECKING:
    from controller.secrets import SecretMasker

_PIPE_LINGER_SECONDS = 0.2  # see Pump.drain_after_exit
# One read per wake-up moves up to this much from a step's pipe into its log; a pipe found
# full (a chatty step) is grown to it, so a 50 MB step costs ~50 wake-ups, not 800.
_PUMP_BYTES = 1 << 20
_PIPE_BYTES = 1 << 16  # Linux's default pipe capacity
_MARKER_ROOM = 4096  # bytes of truncation markers a capped log may take beyond the cap
_LOG_READ_BYTES = 16 * 1024 * 1024  # of a stdout log searched for continueOn.output patterns
ERR_TAIL_BYTES = 8192  # of a step's stderr kept in memory (`Node.err_tail`), per execution
_ERROR_TAIL_BYTES = 1024  # of it quoted in the step's error, as Dagu 1.30.2 quotes


def log_paths(node: Node, log_dir: Path) -> tuple[str, str]:
    """The node's stdout and stderr logs: `.out` and `.err`, or the same `.log` twice for a
    merged node (a handler's are named by its kind: `onExit.out`, `onExit.log`). The one
    place a step's log files are decided (`controller.runlogs.output_files` names them)."""
    stem = safe_name(node.name) if node.kind == "step" else node.kind
    out, err = output_files(log_dir, stem, merged=node.merged)
    return str(out), str(err)


def _log_key(node: Node, stream: str) -> str:
    """The cap bookkeeping key of a stream: a merged node's two streams share one file, so
    they share one room, one count of dropped bytes and one "ends with a newline"."""
    return "out" if node.merged else stream


def precreate_logs(paths: list[str]) -> None:
    """Create the steps' log files from a helper thread while the first steps run.

    Creating a file costs ~0.5 ms here, twice per step: off the chain's critical path,
    opening an existing file costs microseconds. O_CREAT|O_APPEND makes the race benign.
    """

    def work() -> None:
        for path in paths:
            try:
                os.close(
                    os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                )
            except OSError:
                return

    if len(paths) > 4:
        threading.Thread(target=work, daemon=True, name="logs").start()


def open_logs(node: Node, cap_bytes: int) -> None:
    """Open the node's logs for appending (kept open across its executions; a merged node's
    one file serves as both) and reset the per-execution bookkeeping: the cap's and the
    stderr tail (Dagu quotes the failed execution's stderr only; reset first, so a log that
    cannot be opened leaves no earlier execution's lines behind)."""
    node.err_tail = b""
    if node.out_file is None:
        node.out_file = open(node.stdout_path, "ab", buffering=0)
        node.log_room["out"] = cap_bytes - os.fstat(node.out_file.fileno()).st_size
    if node.err_file is None and node.merged:
        node.err_file = node.out_file
    elif node.err_file is None:
        node.err_file = open(node.stderr_path, "ab", buffering=0)
        node.log_room["err"] = cap_bytes - os.fstat(node.err_file.fileno()).st_size
    for stream in ("out", "err"):
        node.log_dropped[_log_key(node, stream)] = 0
        # a log already at its cap ends with the previous execution's marker line
        node.log_nl.setdefault(_log_key(node, stream), True)


def open_redirects(node: Node, resolve: Callable[[str, Node], Path]) -> str:
    """Open the step's `stdout:`/`stderr:` files for appending (`resolve` makes a target a
    path); the error text when one cannot be."""
    for stream, target in (("out", node.step.stdout), ("err", node.step.stderr)):
        if not target or stream in node.redirects:
            continue
        try:
            node.redirects[stream] = open(resolve(target, node), "ab", buffering=0)
        except OSError as exc:
            which = "stdout" if stream == "out" else "stderr"
            return f"failed to setup {which} file: {describe_os_error(exc)}"
    return ""


def close_logs(node: Node) -> None:
    """Close the node's log files and `stdout:`/`stderr:` copies (reopened on demand)."""
    for f in (node.out_file, node.err_file, *node.redirects.values()):
        if f is not None:
            f.close()  # a merged node's one file twice: closing a closed file does nothing
    node.out_file = node.err_file = None
    node.redirects = {}


def read_log_text(path: str) -> str | None:
    """The start of a step's log as text (what `continueOn.output` searches); None when the
    step has no log or it cannot be read."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read(_LOG_READ_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def write_all(fd: int, data: memoryview) -> None:
    """os.write until all of `data` is written (a regular file may take part of it)."""
    while data:
        n = os.write(fd, data)
        data = data[n:]


def capture(node: Node, chunk: bytes, limit: int) -> None:
    """Add stdout to the node's `output:` capture, up to `limit` bytes (maxOutputSize); past
    it nothing is published (`Node.overflow`)."""
    if node.step.output is None or node.overflow:
        return
    if len(node.captured) + len(chunk) > limit:
        node.overflow = True
        node.captured = bytearray()
    else:
        node.captured += chunk


class TailWriter:
    """stderr of a Python executor: the step's log file, and the stderr tail its error and
    the summary quote (`Node.err_tail`)."""

    def __init__(self, node: Node, log: IO[bytes]) -> None:
        self._node, self._log = node, log

    def write(self, data: bytes) -> int:
        """Keep the tail, then log `data`."""
        keep_tail(self._node, data)
        return self._log.write(data)

    def flush(self) -> None:
        """Flush the log file."""
        self._log.flush()


def keep_tail(node: Node, chunk: bytes) -> None:
    """Add stderr to the node's in-memory tail (the last `ERR_TAIL_BYTES`)."""
    node.err_tail = (node.err_tail + chunk[-ERR_TAIL_BYTES:])[-ERR_TAIL_BYTES:]


class CaptureWriter:
    """stdout of a Python executor: the step's log file, and `output:` capture as for a
    process (up to maxOutputSize, then nothing is published)."""

    def __init__(self, node: Node, log: IO[bytes], limit: int) -> None:
        self._node, self._log, self._limit = node, log, limit

    def write(self, data: bytes) -> int:
        """Capture, then log `data`."""
        capture(self._node, data, self._limit)
        return self._log.write(data)

    def flush(self) -> None:
        """Flush the log file."""
        self._log.flush()


class Pump:
    """Pumps the pipes registered with the runner's selector into the steps' logs."""

    def __init__(
        self,
        sel: selectors.BaseSelector,
        *,
        max_log_bytes: int,
        max_output_size: int,
        log_dir: Path,
    ) -> None:
        self._sel = sel
        self._max_log_bytes = max_log_bytes
        self._max_output_size = max_output_size
        self._log_dir = log_dir
        # the DAG's `secrets:` masker (set by the runner once they are resolved): what a
        # step writes reaches its log files with those values masked, as Dagu does
        self.masker: SecretMasker | None = None

    def drain(self, node: Node, p: Proc, stream: str = "out") -> bool:
        """Pump what is available on a step's stdout ("out") or stderr ("err") pipe; False
        at EOF (the pipe is then closed).

        stdout also feeds `output:` capture (up to maxOutputSize) and a sub-DAG's JSON result.
        The log write is capped (`_write_log`): the step never blocks on a full pipe nor gets
        EPIPE because its log is full.
        """
        pipe = p.capture if stream == "out" else p.errpipe
        assert pipe is not None
        try:
            chunk = os.read(pipe.fileno(), _PUMP_BYTES)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.close_pipe(node, p, stream)
            return False
        if len(chunk) == _PIPE_BYTES:
            try:  # a chatty step: fewer, larger reads (may be refused past the user's quota)
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PUMP_BYTES)
            except OSError:
                pass
        if stream == "out" and node.step.call is not None:
            p.data += chunk
            return True
        if stream == "out":  # the next steps get the real value (Dagu); it is stored masked
            capture(node, chunk, self._max_output_size)
        if self.masker is not None:
            # per read chunk: a value split across two reads of a chatty step slips through
            chunk = self.masker.mask_bytes(chunk)
        if stream == "err":
            keep_tail(node, chunk)
        self._write_log(node, stream, chunk)
        if stream in node.redirects:
            try:
                node.redirects[stream].write(chunk)
            except OSError as exc:
                node.log_error = node.log_error or describe_os_error(exc)
        return True

    def _write_log(self, node: Node, stream: str, chunk: bytes) -> None:
        """Append `chunk` to the step's log up to `settings.max_step_log_bytes` (issue 8 #24);
        the rest is counted and discarded. A failed write (ENOSPC) stops the log and fails the
        execution (`log_error`) instead of the runner."""
        key = _log_key(node, stream)
        room = node.log_room.get(key, 0)
        if room <= 0 or node.log_error:
            node.log_dropped[key] = node.log_dropped.get(key, 0) + len(chunk)
            return
        keep = memoryview(chunk)[:room]
        f = node.out_file if stream == "out" else node.err_file
        assert f is not None
        try:
            write_all(f.fileno(), keep)
        except OSError as exc:
            node.log_error = self._log_write_error(exc, f.name)
            node.log_dropped[key] = node.log_dropped.get(key, 0) + len(chunk)
            return
        node.log_room[key] = room - len(keep)
        node.log_nl[key] = keep[-1] == ord("\n")
        if len(keep) < len(chunk):
            node.log_dropped[key] = node.log_dropped.get(key, 0) + len(chunk) - len(keep)

    def _log_write_error(self, exc: OSError, path: object) -> str:
        if exc.errno == errno.ENOSPC:
            return f"{ENOSPC_TEXT} on {self._log_dir}: the step's output was not written"
        return f"cannot write the step log {describe_os_error(exc, str(path))}"

    def close_pipe(self, node: Node, p: Proc, stream: str) -> None:
        """Stop pumping one pipe; a log that dropped output gets its truncation marker."""
        pipe = p.capture if stream == "out" else p.errpipe
        if pipe is None:
            return
        self._sel.unregister(pipe)
        pipe.close()
        if stream == "out":
            p.capture = None
        else:
            p.errpipe = None
        key = _log_key(node, stream)
        dropped = node.log_dropped.get(key, 0)
        f = node.out_file if stream == "out" else node.err_file
        if self.masker is not None and not node.log_error:
            # the step's log and its `stdout:`/`stderr:` copy, both opened for appending
            for copy in (f, node.redirects.get(stream)):
                if copy is not None:
                    self._remask_log(copy.name, self.masker)
        if not dropped or f is None or node.log_error:
            return
        node.log_dropped[key] = 0
        cap = self._max_log_bytes
        marker = b"" if node.log_nl.get(key, True) else b"\n"
        marker += (
            f"[dagloop: output truncated after {cap} bytes; {dropped} more bytes discarded]\n"
        ).encode()
        room = node.log_room.get(key, 0)
        if room - len(marker) < -_MARKER_ROOM:
            return  # markers of earlier executions filled their room: the disk stays bounded
        try:
            write_all(f.fileno(), memoryview(marker))
        except OSError:
            return
        node.log_room[key] = room - len(marker)
        node.log_nl[key] = True

    def remask_logs(self, node: Node) -> None:
        """Mask the DAG's secrets in a step's logs written by an in-process executor (`http`,
        `mail`, …), which bypasses the pipes; the runner calls it when the executor returns."""
        if self.masker is None:
            return
        for f in {id(f): f for f in (node.out_file, node.err_file) if f is not None}.values():
            self._remask_log(f.name, self.masker)

    def recent_stderr(self, node: Node) -> str:
        """The end of the step's stderr that its error quotes (`exits.step_error_text`): the
        last `_ERROR_TAIL_BYTES` of the tail kept in memory, which is this execution's stderr
        alone, as Dagu 1.30.2 quotes it: never an earlier attempt's or repetition's lines
        (still in the `.err`), nor the stdout lines of a merged `.log`."""
        data = node.err_tail
        if self.masker is not None:
            data = self.masker.mask_bytes(data)  # a value split across two reads of stderr
        return data[-_ERROR_TAIL_BYTES:].decode("utf-8", "replace")

    @staticmethod
    def _remask_log(path: object, masker: SecretMasker) -> None:
        """Mask a step's whole log once its pipe is closed: a value split across two reads
        escaped the per-chunk masking. The log's own descriptor appends, so it writes on at
        the new end."""
        try:
            with open(str(path), "r+b") as log:
                data = log.read()
                masked = masker.mask_bytes(data)
                if masked != data:
                    log.seek(0)
                    log.write(masked)
                    log.truncate()
        except OSError:
            pass  # the chunks were masked; only a split value may stay (a full disk)

    def drain_after_exit(self, node: Node, p: Proc) -> None:
        """The process exited: pump what its pipes hold, but wait for EOF only briefly.

        A descendant that left the step's group (setsid, double fork) can hold the write ends
        for ever; waiting for EOF would keep the run `running` as long as it lives (issue 8
        #6). Output written within `_PIPE_LINGER_SECONDS` after the exit still counts.
        """
        deadline = time.monotonic() + _PIPE_LINGER_SECONDS
        poller = select.poll()
        open_pipes = {
            pipe.fileno(): stream
            for stream, pipe in (("out", p.capture), ("err", p.errpipe))
            if pipe is not None
        }
        for fd in open_pipes:
            poller.register(fd, select.POLLIN)
        while open_pipes:
            left_ms = max(0.0, deadline - time.monotonic()) * 1000
            ready = poller.poll(left_ms)
            if not ready:
                break
            for fd, _ev in ready:
                stream = open_pipes.get(fd)
                if stream is not None and not self.drain(node, p, stream):
                    poller.unregister(fd)  # EOF: the pipe is closed and unregistered
                    del open_pipes[fd]
        for stream in ("out", "err"):
            self.close_pipe(node, p, stream)
