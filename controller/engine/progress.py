"""What `dagloop start` (and `retry`, `restart`) shows a person on stdout while a run runs and
when it ends.

Owns the choice of display (`choose_display`: a live view on a terminal, plain event lines
elsewhere, colour only on a terminal, `NO_COLOR`, `TERM=dumb`, `--no-color`, `--quiet`,
`--progress`), the plain event lines (`EventLines`, one line per step transition, stable for
scripts), and the final summary of every step (`summary_lines`). The live view itself is
`controller.engine.liveview`, imported only when it is shown, so that the plain path (cron,
CI, the benchmarks) pays nothing for it.

Called by `controller.engine.launch.execute_run`. The JSON log lines on stderr are not this
module's: only human progress on stdout is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from controller.engine.exits import STDERR_TAIL_MARK
from model.status import RunStatus, StepStatus

if TYPE_CHECKING:  # no class to build at run time: only the type checker needs it
    from typing import Protocol

    class Progress(Protocol):
        """What `execute_run` drives: the runner's callback, `follow` the runner, `close`."""

        def __call__(self, node: Any) -> None: ...

        def follow(self, source: Any, *, mask: Callable[[str], str]) -> None: ...

        def close(self) -> None: ...


__all__ = [
    "Display",
    "EventLines",
    "StepSummary",
    "choose_display",
    "final_lines",
    "open_progress",
    "step_summaries",
    "summary_lines",
    "write_lines",
]

# SGR colour codes by status (green, red, yellow, grey, cyan); shared with the live view
STATUS_COLOURS: Mapping[int, str] = {
    StepStatus.SUCCEEDED: "32",
    StepStatus.PARTIALLY_SUCCEEDED: "33",
    StepStatus.FAILED: "31",
    StepStatus.ABORTED: "33",
    StepStatus.SKIPPED: "90",
    StepStatus.RUNNING: "36",
}
RUN_COLOURS: Mapping[int, str] = {
    RunStatus.SUCCEEDED: "32",
    RunStatus.PARTIALLY_SUCCEEDED: "33",
    RunStatus.FAILED: "31",
    RunStatus.ABORTED: "33",
}

STDERR_TAIL_LINES = 5
_TAIL_LINE_CHARS = 200
# Everything a step could print that moves the cursor or changes the terminal: CSI and OSC
# sequences, then any other control character but tab (compiled on first use: a run whose
# steps all succeed off a terminal never needs them).
_ESCAPES = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?"
_CONTROLS = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"


class Display:
    """How progress is shown: `mode` "quiet" (nothing), "lines" (plain event lines) or "live"
    (a view redrawn in place); `color` SGR colours; `tty` the stream is a terminal (plain lines
    then also show a step's start); `unicode` the stream takes UTF-8 (spinner, bar).

    A plain class, as `StepSummary`: a NamedTuple costs a quarter of a millisecond to define,
    on the path of every `start`."""

    __slots__ = ("color", "mode", "tty", "unicode")

    def __init__(self, *, mode: str, color: bool, tty: bool, unicode: bool) -> None:
        self.mode = mode
        self.color = color
        self.tty = tty
        self.unicode = unicode

    def __repr__(self) -> str:
        return f"Display(mode={self.mode!r}, color={self.color}, tty={self.tty})"


def choose_display(
    *,
    progress: str,
    quiet: bool,
    no_color: bool,
    tty: bool,
    environ: Mapping[str, str],
    encoding: str | None,
) -> Display:
    """The display for a stream (`tty`: it is a terminal; `encoding`: its encoding).

    `--quiet` wins, then `--progress`: `never` gives plain lines even on a terminal,
    `always` the live view even on a pipe, `auto` the live view on a terminal that can move
    its cursor (not `TERM=dumb`). Colour only on a terminal, and not with `NO_COLOR` (any
    non-empty value, no-color.org), `TERM=dumb` or `--no-color`.
    """
    dumb = environ.get("TERM", "") == "dumb"
    color = tty and not dumb and not no_color and not environ.get("NO_COLOR")
    unicode = (encoding or "").lower().replace("-", "") == "utf8"
    if quiet:
        mode = "quiet"
    elif progress == "always" or (progress == "auto" and tty and not dumb):
        mode = "live"
    else:
        mode = "lines"
    return Display(mode=mode, color=color, tty=tty, unicode=unicode)


def paint(text: str, colour: str | None, *, color: bool) -> str:
    """`text` in the SGR `colour` when `color` is on."""
    if not color or not colour:
        return text
    return f"\x1b[{colour}m{text}\x1b[0m"


def seconds_text(seconds: float) -> str:
    """A duration for people: `0.4s`, `12.3s`, `4m05s`, `2h03m`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def clean(text: str) -> str:
    """`text` without escape sequences or control characters (a step's output shown on a
    terminal must not move its cursor, and the plain lines carry no escape codes)."""
    if text.isprintable():  # nearly always: no regex to compile
        return text
    return re.sub(_CONTROLS, " ", re.sub(_ESCAPES, "", text))


def write_lines(stream: TextIO, lines: Sequence[str]) -> None:
    """Write `lines` and flush. When the reader has gone (`dagloop start … | head`), the rest
    of the output goes to /dev/null: the run goes on to its recorded end and exit code, where
    the error would have broken it off and left it to be reaped as lost."""
    try:
        stream.write("".join(f"{line}\n" for line in lines))
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # the buffered rest is flushed there, silently
        os.close(devnull)


# --------------------------------------------------------------------------- plain lines


class EventLines:
    """Prints one line per step transition: `failed    flaky 3.5s retries=2 exit=1`.

    The format scripts and logs read; a step's start is shown only on a terminal (as before
    the live view existed), colour only when `color`.
    """

    def __init__(self, stream: TextIO, display: Display) -> None:
        self.stream = stream
        self.display = display

    def __call__(self, node: Any) -> None:
        """The runner's progress callback: `node` (a `graph.Node`) was just saved."""
        status = node.status
        first_start = status == StepStatus.RUNNING and node.done_count == 0
        if first_start and node.retry_count == 0 and not self.display.tty:
            return
        dur = ""
        if node.started_at and node.finished_at:
            dur = f" {node.finished_at - node.started_at:.1f}s"
        extra = f" retries={node.retry_count}" if node.retry_count else ""
        code = f" exit={node.exit_code}" if node.exit_code not in (None, 0) else ""
        label = paint(f"{status.label:<9}", STATUS_COLOURS.get(status), color=self.display.color)
        write_lines(self.stream, [f"{label} {node.name}{dur}{extra}{code}"])

    def follow(self, source: Any, *, mask: Callable[[str], str]) -> None:
        """Nothing to follow: plain lines print only on transitions, and show no step text."""

    def close(self) -> None:
        """Nothing to take down."""


def open_progress(
    stream: TextIO, display: Display, *, dag_name: str, run_id: str, total: int, started_at: float
) -> Progress | None:
    """The progress shown on `stream` for a run of `total` steps: None when quiet, the live
    view (imported only now) or the plain event lines."""
    if display.mode == "quiet":
        return None
    if display.mode == "lines":
        return EventLines(stream, display)
    from controller.engine.liveview import LiveView

    return LiveView(
        stream, display, dag_name=dag_name, run_id=run_id, total=total, started_at=started_at
    )


# --------------------------------------------------------------------------- the summary


class StepSummary:
    """One step (or handler) of a finished run, as the summary shows it: `seconds` None when
    it never ran; `error` and `stderr_tail` only for a failed step."""

    __slots__ = (
        "error",
        "exit_code",
        "name",
        "retries",
        "seconds",
        "status",
        "stderr_path",
        "stderr_tail",
        "stdout_path",
    )

    def __init__(
        self,
        *,
        name: str,
        status: StepStatus,
        seconds: float | None,
        exit_code: int | None,
        retries: int,
        error: str = "",
        stderr_tail: Sequence[str] = (),
        stdout_path: str = "",
        stderr_path: str = "",
    ) -> None:
        self.name = name
        self.status = status
        self.seconds = seconds
        self.exit_code = exit_code
        self.retries = retries
        self.error = error
        self.stderr_tail = stderr_tail
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path


def step_summaries(
    steps: Iterable[Any], handlers: Iterable[Any], *, mask: Callable[[str], str] | None = None
) -> list[StepSummary]:
    """The summary rows of a run's nodes: the steps in order, then the handlers that ran, in
    the order they ran. A failed step gets its error and the last lines of its stderr, with
    the DAG's secrets masked by `mask` (text -> text)."""
    ran = sorted((h for h in handlers if h.started_at), key=lambda h: h.started_at)
    return [_summary(node, mask) for node in [*steps, *ran]]


def _summary(node: Any, mask: Callable[[str], str] | None) -> StepSummary:
    seconds = None
    if node.started_at and node.finished_at:
        seconds = node.finished_at - node.started_at
    error = ""
    tail: tuple[str, ...] = ()
    if node.status == StepStatus.FAILED:
        error = mask(node.error) if mask and node.error else node.error
        tail = tuple(mask(line) if mask else line for line in node_stderr_tail(node))
    return StepSummary(
        name=clean(node.name),
        status=node.status,
        seconds=seconds,
        exit_code=node.exit_code,
        retries=node.retry_count,
        error=error,
        stderr_tail=tail,
        stdout_path=node.stdout_path,
        stderr_path=node.stderr_path,
    )


def node_stderr_tail(node: Any, lines: int = STDERR_TAIL_LINES) -> list[str]:
    """The last `lines` non-blank lines of the stderr of a step's last execution, as the pump
    kept it (`Node.err_tail`, the same bytes its error quotes the end of), cleaned of escape
    codes: never an earlier attempt's lines from its `.err`, nor stdout from a merged `.log`."""
    return _last_lines(node.err_tail, lines)


def _last_lines(data: bytes, lines: int) -> list[str]:
    """The last `lines` non-blank lines of `data`, cleaned of escape codes and cut short."""
    text = data.decode("utf-8", errors="replace")
    kept = [clean(line).rstrip() for line in text.splitlines()]
    return [line[:_TAIL_LINE_CHARS] for line in kept if line.strip()][-lines:]


def summary_lines(
    rows: Sequence[StepSummary], *, dag_name: str, status: RunStatus, seconds: float, color: bool
) -> list[str]:
    """The summary printed when a run ends, on a terminal and off it: a heading, one aligned
    line per step (`name  status  duration  exit=N  retries=N`), and under a failed step its
    error, the tail of its stderr and its log files."""
    heading = f"summary of {dag_name}: {status.label} in {seconds_text(seconds)}"
    out = [paint(heading, "1", color=color)]
    width = min(max((len(r.name) for r in rows), default=0), 32)
    status_width = max((len(r.status.label) for r in rows), default=0)
    for row in rows:
        duration = seconds_text(row.seconds) if row.seconds is not None else "-"
        code = "-" if row.exit_code is None else str(row.exit_code)
        label = f"{row.status.label:<{status_width}}"
        label = paint(label, STATUS_COLOURS.get(row.status), color=color)
        out.append(
            f"  {row.name:<{width}}  {label} {duration:>7}  exit={code:<3} retries={row.retries}"
        )
        if row.status == StepStatus.FAILED:
            out.extend(_failure_lines(row, color=color))
    return out


def _failure_lines(row: StepSummary, *, color: bool) -> list[str]:
    """The error, stderr tail and log paths under a failed step's line."""
    out: list[str] = []
    # The error's own stderr tail is left out: the lines below show it.
    error = row.error.split(STDERR_TAIL_MARK, 1)[0]
    out.extend(f"      error: {clean(line)}" for line in error.splitlines() if line.strip())
    if row.stderr_tail:
        count = len(row.stderr_tail)
        out.append(
            "      stderr, last line:" if count == 1 else f"      stderr, last {count} lines:"
        )
        out.extend(paint(f"        {line}", "2", color=color) for line in row.stderr_tail)
    if row.stdout_path:
        out.append(f"      stdout log: {row.stdout_path}")
    if row.stderr_path:
        out.append(f"      stderr log: {row.stderr_path}")
    return out


def final_lines(*, dag_name: str, run_id: str, status: RunStatus, color: bool) -> list[str]:
    """Where to look next, then the outcome as one line, `STATUS DAG RUN_ID`, last (the line
    scripts have read since the first version)."""
    out = [f"next: dagloop status {dag_name} --run-id {run_id}"]
    if not status.is_success() or status == RunStatus.PARTIALLY_SUCCEEDED:
        out.append(f"      dagloop retry {dag_name} --run-id {run_id}  (re-runs the failed steps)")
    verdict = paint(status.label, RUN_COLOURS.get(status), color=color)
    out.append(f"{verdict} {dag_name} {run_id}")
    return out
