"""Log output of the controller, runner and server: one event per line, text or JSON, no secrets.

Owns the stdlib `logging` set-up. `setup_logging` is called once by each `dagloop` command at
start-up (stderr, so journald gets it); `run_log_handler` gives a runner its per-run log file in
the same format. Context travels as `extra={"dag": ..., "run_id": ...}` (in JSON both are always
there, null for a line about no run); any other extra field is printed too. Values registered
with `add_secret` are replaced by `*****` in every line, after formatting, so neither a message,
an argument, an extra field nor a traceback can leak them.

The line's shape and the secrets registry are `controller.logline`'s (re-exported here).
Debug mode lowers the level to DEBUG and adds `source` ("file.py:123").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from controller.logline import (
    LOG_FORMATS,
    SECRET_MASK,
    add_secret,
    clear_secrets,
    format_line,
    redact,
)
from controller.utc import utc_text
from model.config import Settings

__all__ = [
    "SECRET_MASK",
    "LineFormatter",
    "RedactingFilter",
    "add_secret",
    "clear_secrets",
    "redact",
    "run_log_handler",
    "setup_logging",
]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_FIRST = ("dag", "run_id")  # context fields printed first, in this order

_current: tuple[str, bool] = ("text", False)  # (log_format, debug) of the last setup_logging


class LineFormatter(logging.Formatter):
    """Formats a record as one text or JSON line, with secrets redacted."""

    def __init__(self, *, log_format: str = "text", debug: bool = False) -> None:
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be 'text' or 'json', got {log_format!r}")
        super().__init__()
        self.log_format = log_format
        self.debug = debug

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        fields: dict[str, Any] = {k: extras.pop(k) for k in _FIRST if k in extras}
        if self.log_format == "json":
            # one schema for shippers: every JSON line has the run context, null when the line
            # is about no run (text stays short and leaves it out)
            fields = {k: fields.get(k) for k in _FIRST}
        fields.update(extras)
        if self.debug:
            fields["source"] = f"{record.filename}:{record.lineno}"
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["error"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        """One line, no trailing newline."""
        return format_line(
            time=utc_text(record.created),
            level=record.levelname,
            msg=record.getMessage(),
            fields=self._fields(record),
            log_format=self.log_format,
        )


class RedactingFilter(logging.Filter):
    """Redacts a record's message and string extras in place, for handlers with other formatters.

    Our own `LineFormatter` already redacts the finished line; this filter is for foreign handlers
    (a library's, a test's) that should not see secrets either.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; rewrites it so formatting cannot reintroduce a secret."""
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class _DagloopHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `setup_logging` installed, so a second call replaces it."""


def setup_process_logging(settings: Settings) -> None:
    """Logging of a long-running process (scheduler, server, start-all, worker): the settings'
    format and debug flag, with the process's own credentials redacted from every line."""
    setup_logging(
        log_format=settings.log_format,
        debug=settings.debug,
        secrets=(
            settings.auth_basic_password,
            settings.auth_token,
            settings.database_url,
            settings.gitsync_auth_token,
        ),
    )


def setup_logging(
    *,
    log_format: str,
    debug: bool,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Send the root logger to `stream` (default stderr) as text or JSON lines.

    Idempotent: calling again replaces the handler installed before. `debug` lowers the level to
    DEBUG and adds the source location to every line. `secrets` (e.g. the controller's own
    credentials) are redacted from every line.
    """
    global _current
    for value in secrets:
        if value:
            add_secret(value)
    formatter = LineFormatter(log_format=log_format, debug=debug)
    handler = _DagloopHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DagloopHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    _current = (log_format, debug)


def run_log_handler(path: Path) -> logging.Handler:
    """A handler writing one run's log file at `path`, formatted as `setup_logging` chose.

    The caller attaches it (typically to the root logger) and closes it when the run ends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    log_format, debug = _current
    handler.setFormatter(LineFormatter(log_format=log_format, debug=debug))
    return handler
