"""The log events of one run: run started and finished, each step's start, retry and end, and
the run's errors, in the configured log format (`logFormat` / `DAGU_LOG_FORMAT`).

Every event goes to the run's own log (`run.log`) and, for `dagloop start` in JSON, to stderr
too, one object a line (as `dagu start`): there a log shipper reads them, while the progress
for humans stays on stdout. Each line carries `dag` and `run_id`, and `step` where there is
one; facts are fields, never pasted into `msg`.

`RunEvents.step` turns the runner's step transitions (the same node saves the progress printer
sees) into events, keeping only the last state it saw of each step. Events during the run
(`note`) never fail it: a log that cannot be written loses the line; `emit` raises, for the
first and last lines, whose failure the caller reports. `tell` is for what only stderr's reader
needs (a refusal). Imports no `logging` (`controller.logline`). Callers:
`controller.engine.launch` (run events, the step hook), `controller.engine.start` (refusals),
the runner (its steps, a skipped dotenv file), `controller.engine.stopping` (signals sent).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from controller.logline import format_line
from controller.utc import utc_text
from model.status import StepStatus

__all__ = ["RunEvents"]

# Step statuses that end a step, with the event each one logs and its level.
_ENDED = {
    StepStatus.SUCCEEDED: ("INFO", "step finished"),
    StepStatus.PARTIALLY_SUCCEEDED: ("WARNING", "step finished"),
    StepStatus.SKIPPED: ("INFO", "step skipped"),
    StepStatus.FAILED: ("ERROR", "step failed"),
    StepStatus.ABORTED: ("WARNING", "step aborted"),
}


class RunEvents:
    """Writes the events of run `run_id` of `dag` (None: no run yet) in `log_format` to
    `run_log` (None: none, e.g. it cannot be written) and to `stream` (None: not to one)."""

    def __init__(
        self,
        *,
        log_format: str,
        dag: str,
        run_id: str | None,
        run_log: Path | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.log_format = log_format
        self.dag = dag
        self.run_id = run_id
        self.run_log = run_log
        self.stream = stream
        # name -> (status, retry_count, repeat_n) last seen, to log each transition once
        self._seen: dict[str, tuple[StepStatus, int, int]] = {}
        # kept open for the run: an open and a close per event cost a 100-step run ~25 ms
        self._file: TextIO | None = None

    def emit(self, level: str, msg: str, *, step: str | None = None, **fields: Any) -> None:
        """One event; `fields` are its facts. Raises OSError when the run log cannot be
        written (the caller decides: before the run starts, that fails it)."""
        line = self._line(level, msg, step, fields)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self.run_log is not None:
            if self._file is None:
                # line-buffered: each event is on disk once written, for readers of a live run
                self._file = open(self.run_log, "a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")

    def close(self) -> None:
        """Close the run log (after the run's last event)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def tell(self, level: str, msg: str, *, text: str, **fields: Any) -> None:
        """What the reader of stderr must know and the run log cannot hold (a refusal, a run
        log that cannot be written): an event on the stream when events go there, else `text`
        as one plain line on stderr."""
        if self.stream is None:
            print(text, file=sys.stderr)
            return
        self.stream.write(self._line(level, msg, None, fields) + "\n")
        self.stream.flush()

    def _line(self, level: str, msg: str, step: str | None, fields: dict[str, Any]) -> str:
        context: dict[str, Any] = {"dag": self.dag, "run_id": self.run_id}
        if step is not None:
            context["step"] = step
        return format_line(
            time=utc_text(time.time()),
            level=level,
            msg=msg,
            fields={**context, **fields},
            log_format=self.log_format,
        )

    def note(self, level: str, msg: str, *, step: str | None = None, **fields: Any) -> None:
        """`emit` for a run under way: a log that cannot be written loses the line."""
        try:
            self.emit(level, msg, step=step, **fields)
        except OSError:
            pass

    def outage_note(self, line: str) -> None:
        """A database outage seen by the runner (its start, its end), as a warning."""
        self.note("WARNING", "state database outage", detail=line)

    def run_started(self, *, attempt: int) -> None:
        """The first line of an attempt; raises OSError when the run log cannot be written."""
        self.emit("INFO", "run started", attempt=attempt, pid=os.getpid())

    def step(self, node: Any) -> None:
        """Log the transition the runner just saved for `node` (a `graph.Node`), if it is
        one: started, retried, repeated or ended."""
        now = (node.status, node.retry_count, node.repeat_n)
        before = self._seen.get(node.name)
        if before == now:
            return  # a save that changed no state (a process group recorded, …)
        self._seen[node.name] = now
        if node.status == StepStatus.RUNNING:
            if before is None or before[0] != StepStatus.RUNNING:
                self.note("INFO", "step started", step=node.name)
            elif node.retry_count > before[1]:
                self.note(
                    "WARNING",
                    "step failed; retrying",
                    step=node.name,
                    retry=node.retry_count,
                    exit_code=node.last_exit,
                )
            elif node.repeat_n > before[2]:
                self.note("INFO", "step repeating", step=node.name, repeat=node.repeat_n)
            return
        ended = _ENDED.get(node.status)
        if ended is None:
            return
        level, msg = ended
        facts: dict[str, Any] = {"status": node.status.label, "exit_code": node.exit_code}
        if node.error:
            facts["error"] = node.error
        self.note(level, msg, step=node.name, **facts)
