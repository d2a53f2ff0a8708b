"""The live view of a run on a terminal: a few lines redrawn in place while the run runs.

```
etl  run 01a23c40-a4b6-7607-9671-78a01c74609e
⠸ [██████████░░░░░░░░░░] 2/4 steps  50%  3.4s
  transform  1.2s  retry 1
  upload     0.3s
```

Owns the frame (`frame_lines`, pure: the header with the DAG, the run id, `done/total` steps,
a bar, the percentage and the elapsed time; one line per running step with its elapsed time
and retries), fitting it to the terminal's width and height, and `LiveView`, which redraws it
from a ticker thread and prints the lines that stay (a step failed, retried or aborted) above
it. Only a handful of ANSI sequences are used (carriage return, cursor up, erase down, hide
and show the cursor), which every terminal that is not `TERM=dumb` understands: a library
such as rich would cost more to import than the whole view.

Imported only when the view is shown (`controller.engine.progress.open_progress`).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TextIO

from controller.engine.progress import (
    STATUS_COLOURS,
    Display,
    clean,
    node_stderr_tail,
    paint,
    seconds_text,
)
from model.status import StepStatus

__all__ = ["LiveView", "RunningStep", "frame_lines"]

TICK_SECONDS = 0.1  # redraw period: the spinner and the elapsed times move at this rate
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_SPINNER_ASCII = "|/-\\"
_BAR_MAX = 30
_BAR_MIN = 6
_NAME_MAX = 32
# Columns left free at the right edge: the cursor rests at the start of the last line, so
# the terminal's echo of Ctrl-C (`^C`) never wraps, and no line ever reaches the last column
# (some terminals wrap there).
_RIGHT_MARGIN = 1

_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_ERASE_DOWN = "\x1b[J"
_DIM = "2"

_DONE = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.PARTIALLY_SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.ABORTED,
        StepStatus.SKIPPED,
        StepStatus.REJECTED,
    }
)


class RunningStep(NamedTuple):
    """A running step (or handler) as its line shows it."""

    name: str
    seconds: float  # since it started
    retries: int
    note: str = ""  # e.g. "next try in 0.8s", "run 3"


class Segment(NamedTuple):
    """A piece of a line and its SGR colour ("" none)."""

    text: str
    colour: str = ""


def frame_lines(
    *,
    dag_name: str,
    run_id: str,
    done: int,
    total: int,
    elapsed: float,
    running: Sequence[RunningStep],
    stopping: bool,
    tick: int,
    width: int,
    height: int,
    display: Display,
) -> list[str]:
    """The lines of the live area for a terminal of `width` x `height`: two header lines,
    then the running steps, as many as fit (the rest counted on one line)."""
    room = max(width - _RIGHT_MARGIN, 1)
    spinner = _SPINNER if display.unicode else _SPINNER_ASCII
    title = [Segment(dag_name, "1"), Segment(f"  run {run_id}", _DIM)]
    if stopping:
        title.append(Segment("  stopping…" if display.unicode else "  stopping...", "33"))
    pct = 100 * done // total if total else 100
    counts = f" {done}/{total} steps  {pct}%  {seconds_text(elapsed)}"
    head = spinner[tick % len(spinner)]
    bar_width = min(_BAR_MAX, room - len(head) - len(counts) - 3)
    status = [Segment(head, "36")]
    if bar_width >= _BAR_MIN:
        status.append(Segment(" " + _bar(done, total, bar_width, unicode=display.unicode)))
    status.append(Segment(counts))
    lines = [fit(title, room, display), fit(status, room, display)]
    slots = max(height - 1, 3) - len(lines)
    shown = running if len(running) <= slots else running[: slots - 1]
    # Names give way before the elapsed time does: "  NAME    1.2s" must fit.
    longest = max((len(r.name) for r in shown), default=0)
    name_width = max(min(longest, _NAME_MAX, room - 10), 4)
    for step in shown:
        lines.append(fit(_running_segments(step, name_width, display), room, display))
    if len(shown) < len(running):
        dots = "…" if display.unicode else "..."
        more = Segment(f"  {dots} and {len(running) - len(shown)} more running")
        lines.append(fit([more], room, display))
    return lines


def _bar(done: int, total: int, width: int, *, unicode: bool) -> str:
    """`[████░░░░]` of `width` columns, brackets included."""
    inner = width - 2
    full = inner * done // total if total else inner
    fill, empty = ("█", "░") if unicode else ("#", "-")
    return f"[{fill * full}{empty * (inner - full)}]"


def _running_segments(step: RunningStep, name_width: int, display: Display) -> list[Segment]:
    name = step.name
    if len(name) > name_width:
        name = name[: name_width - 1] + ("…" if display.unicode else "~")
    out = [Segment(f"  {name:<{name_width}}  "), Segment(f"{seconds_text(step.seconds):>6}", _DIM)]
    if step.retries:
        out.append(Segment(f"  retry {step.retries}", "33"))
    if step.note:
        out.append(Segment(f"  {step.note}", _DIM))
    return out


def cells(char: str) -> int:
    """Terminal columns of one character (wide East Asian characters take two)."""
    if char < "\u0300":  # Latin, before the first combining mark: the usual case, no lookup
        return 1
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def columns(text: str) -> int:
    """Terminal columns of `text`."""
    return len(text) if text.isascii() else sum(cells(c) for c in text)


def fit(segments: Sequence[Segment], room: int, display: Display) -> str:
    """The segments as one line of at most `room` columns (cut with an ellipsis), painted
    when colour is on."""
    if sum(columns(s.text) for s in segments) <= room:  # a frame is redrawn ten times a second
        return "".join(paint(s.text, s.colour, color=display.color) for s in segments)
    out: list[str] = []
    used = 0
    ellipsis = "…" if display.unicode else "~"
    for seg in segments:
        kept = []
        for char in seg.text:
            width = cells(char)
            if used + width > room - 1:
                kept.append(ellipsis)
                out.append(paint("".join(kept), seg.colour, color=display.color))
                return "".join(out)
            kept.append(char)
            used += width
        out.append(paint("".join(kept), seg.colour, color=display.color))
    return "".join(out)


def _terminal_size(stream: TextIO) -> os.terminal_size:
    """The size of the terminal `stream` writes to; on a pipe, or a terminal that was never
    given a size (0x0), `COLUMNS`/`LINES` or 80x24."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return shutil.get_terminal_size()
    return size if size.columns > 0 and size.lines > 0 else shutil.get_terminal_size()


class LiveView:
    """Redraws the live area of one run in place and keeps the notable step events above it.

    The runner calls the view on each step transition (`__call__`, its thread); `follow`
    starts a ticker thread that redraws the area every `TICK_SECONDS` from the runner's
    nodes; `close` stops it and erases the area, leaving only the lines that stay.
    """

    def __init__(
        self,
        stream: TextIO,
        display: Display,
        *,
        dag_name: str,
        run_id: str,
        total: int,
        started_at: float,
    ) -> None:
        self.stream = stream
        self.display = display
        self.dag_name = clean(dag_name)
        self.run_id = run_id
        self.total = total
        self.started_at = started_at
        self._source: Any = None
        self._mask: Callable[[str], str] = str  # until `follow` gives the run's
        # Lines to print above the area at the next draw. A deque's extend and popleft are
        # atomic: the runner hands lines over without a lock, and so never waits on a draw
        # (a terminal paused with Ctrl-S blocks the drawing thread only).
        self._above: deque[str] = deque()
        self._retried: set[int] = set()  # id() of the nodes whose retry has a line
        self._drawn = 0  # lines of the area on the screen now
        self._tick = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken = False  # the terminal went away: stop drawing

    def __call__(self, node: Any) -> None:
        """The runner's progress callback: `node` (a `graph.Node`) was just saved. A step's
        first retry, a failure or an abort gets a line that stays above the live area."""
        self._above.extend(self._lasting_lines(node))

    def _lasting_lines(self, node: Any) -> list[str]:
        color = self.display.color
        mark = {StepStatus.FAILED: "✗", StepStatus.ABORTED: "■", StepStatus.RUNNING: "↻"}
        if not self.display.unicode:
            mark = {StepStatus.FAILED: "x", StepStatus.ABORTED: "!", StepStatus.RUNNING: "r"}
        status = node.status
        name = clean(node.name)
        code = f"  exit={node.exit_code}" if node.exit_code is not None else ""
        if status == StepStatus.RUNNING:
            # Only a step's first retry gets a line: its running line counts the next ones,
            # and a step retried a hundred times must not scroll the screen away.
            if node.retry_count == 0 or id(node) in self._retried:
                return []
            self._retried.add(id(node))
            word = paint(f"{mark[status]} {name}", "33", color=color)
            return [f"{word}{code}  retrying (retry {node.retry_count})"]
        if status not in (StepStatus.FAILED, StepStatus.ABORTED):
            return []
        dur = ""
        if node.started_at and node.finished_at:
            dur = f"  {seconds_text(node.finished_at - node.started_at)}"
        retries = f"  retries={node.retry_count}" if node.retry_count else ""
        word = paint(f"{mark[status]} {name}  {status.label}", STATUS_COLOURS[status], color=color)
        lines = [f"{word}{code}{dur}{retries}"]
        if status == StepStatus.FAILED:
            tail = node_stderr_tail(node, 2)
            lines.extend(paint(f"    {self._mask(line)}", _DIM, color=color) for line in tail)
        return lines

    def follow(self, source: Any, *, mask: Callable[[str], str]) -> None:
        """Draw the area from `source` (the `Runner`: its `nodes`, `handlers`, `canceled`)
        every `TICK_SECONDS` until `close`; a failed step's stderr lines go through `mask`."""
        self._source = source
        self._mask = mask
        self._write(_HIDE_CURSOR)
        self._draw()
        self._thread = threading.Thread(target=self._run, name="liveview", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop redrawing; print the lines still due above, erase the area, show the cursor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write(self._erase() + self._take_above() + _SHOW_CURSOR)
        self._drawn = 0

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._tick += 1
            self._draw()

    def _draw(self) -> None:
        size = _terminal_size(self.stream)
        above = self._take_above()  # before the frame: it then counts what they tell
        lines = self._frame(size.columns, size.lines)
        # One write per frame, ending at the start of its last line (see _RIGHT_MARGIN).
        self._write(self._erase() + above + "\n".join(lines) + "\r")
        self._drawn = len(lines)

    def _take_above(self) -> str:
        """The lines handed over for above the area, as text, and forget them."""
        out = []
        while self._above:
            out.append(self._above.popleft() + "\n")
        return "".join(out)

    def _erase(self) -> str:
        """Back to the first line of the area, and erase it and everything below."""
        if not self._drawn:
            return "\r" + _ERASE_DOWN
        up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
        return "\r" + up + _ERASE_DOWN

    def _frame(self, width: int, height: int) -> list[str]:
        # Read from the runner's thread without a lock: each attribute read is atomic, and a
        # frame that mixes two moments is replaced by the next one a tick later.
        source = self._source
        steps = list(source.nodes) if source is not None else []
        handlers = list(source.handlers.values()) if source is not None else []
        now, mono = time.time(), time.monotonic()
        running = [_running(n, now, mono) for n in [*steps, *handlers] if n.status.is_active()]
        return frame_lines(
            dag_name=self.dag_name,
            run_id=self.run_id,
            done=sum(1 for n in steps if n.keep or n.status in _DONE),
            total=self.total,
            elapsed=max(now - self.started_at, 0.0),
            running=running,
            stopping=bool(source is not None and source.canceled),
            tick=self._tick,
            width=width,
            height=height,
            display=self.display,
        )

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal is gone (hang-up, closed pipe)
            self._broken = True


def _running(node: Any, now: float, mono: float) -> RunningStep:
    """A running node's line: its elapsed time, retries, and what it waits for."""
    note = ""
    wait = node.wait_until
    if wait is not None and not node.procs:
        left = seconds_text(max(wait - mono, 0.0))
        note = f"run {node.done_count + 1} in {left}" if node.repeat_wait else f"next try in {left}"
    elif node.done_count:
        note = f"run {node.done_count + 1}"
    started = node.started_at or now
    return RunningStep(clean(node.name), max(now - started, 0.0), node.retry_count, note)
