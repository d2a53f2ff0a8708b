"""How the end of a step's execution is told, in Dagu's words: the exit code and text of a
process (`signal: killed`, `exit status 2`), a step timeout, and the node error with the tail
of the step's stderr.

Called by the runner (`controller.engine.runner`) when an execution ends.
"""

from __future__ import annotations

import signal
from pathlib import Path

from controller.diskfull import ENOSPC_TEXT, is_full

_SIGNAL_TEXT: dict[int, str] = {
    signal.SIGTERM: "terminated",
    signal.SIGKILL: "killed",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGQUIT: "quit",
    signal.SIGABRT: "aborted",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGPIPE: "broken pipe",
    signal.SIGUSR1: "user defined signal 1",
    signal.SIGUSR2: "user defined signal 2",
}


def process_exit(returncode: int) -> tuple[int, str]:
    """(exit code, error text) of a process's return code; "" for a success. A process
    killed by a signal has exit code -1, as Go reports it to Dagu (continueOn, retryPolicy
    and repeatPolicy `exitCode` lists and `${id.exitCode}` see -1), and the signal is told
    as Go tells it (`signal: killed`)."""
    if returncode < 0:
        sig = -returncode
        try:
            err = f"signal: {_SIGNAL_TEXT.get(sig, signal.Signals(sig).name)}"
        except ValueError:
            err = f"signal {sig}"
        return -1, err
    return returncode, f"exit status {returncode}" if returncode else ""


# What precedes the stderr tail in a step's error (the summary of `start` shows the tail apart)
STDERR_TAIL_MARK = "\nrecent stderr (tail):"


def timeout_text(elapsed_seconds: float, timeout_seconds: float) -> str:
    """The error of an execution its step timeout ended."""
    return (
        f"step timed out after {go_seconds(elapsed_seconds)} "
        f"(timeout: {go_seconds(timeout_seconds)}): context deadline exceeded"
    )


def step_error_text(name: str, err: str, *, log_dir: Path, stderr_tail: str) -> str:
    """Dagu's node error: `failed to execute step "X": exit status 2`, the end of the
    step's stderr (`stderr_tail`, `Pump.recent_stderr`) after an exit status, quoted as it
    is (blank lines, spaces, a missing last newline), as Dagu 1.30.2 quotes it; a step
    timeout is reported as it is."""
    if err.startswith("step timed out"):
        return err
    text = f'failed to execute step "{name}": {err}'
    if err.startswith("exit status") and is_full(log_dir):
        # The step wrote into a full log disk; its own error went to the same disk, so
        # the reason is told from the file system (issue 8 #22).
        text += f"\n{ENOSPC_TEXT} on {log_dir}: the step's output was not written"
    if err.startswith("exit status") and stderr_tail:
        text += f"{STDERR_TAIL_MARK}\n{stderr_tail}"
    return text


def go_seconds(seconds: float) -> str:
    """A duration as Go prints it, to the millisecond (`1.003s`, `1m30s`, `2h0m0s`)."""
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"
