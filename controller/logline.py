"""One log line, text or JSON, and the secrets no line may show.

Owns the shape every log line of dagloop has (the seed's), and the registry of secret values
masked in each line after formatting:

    text: 2024-03-15T12:00:00Z INFO DAG execution started dag=data-pipeline run_id=20240315_1
    json: {"time": "2024-03-15T12:00:00Z", "level": "INFO", "msg": "DAG execution started",
           "dag": "data-pipeline", "run_id": "20240315_1"}

Imports no `logging`: a runner writes its run's events (`controller.runevents`) with this
alone, and importing `logging` would cost each runner milliseconds at a minute boundary.
Callers: `controller.logs` (the `logging` formatter of the long-running processes) and
`controller.runevents`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping

__all__ = [
    "LOG_FORMATS",
    "SECRET_MASK",
    "add_secret",
    "clear_secrets",
    "format_line",
    "redact",
]

SECRET_MASK = "*****"
LOG_FORMATS = ("text", "json")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, each with its JSON-escaped form


def add_secret(value: str) -> None:
    """Register a value that must never appear in a log line; it is printed as `*****`."""
    global _secrets
    if not value:
        return
    forms = {value, json.dumps(value)[1:-1]}
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | forms, key=len, reverse=True))


def clear_secrets() -> None:
    """Forget all registered secrets (for tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `*****`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    return text


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=\n\r\t\\'):
        return json.dumps(text)
    return text


def format_line(
    *, time: str, level: str, msg: str, fields: Mapping[str, object], log_format: str
) -> str:
    """One line (no newline) in `log_format` ("text" or "json"), secrets redacted. `fields`
    follow `time`, `level` and `msg` in their order."""
    if log_format == "json":
        line = json.dumps(
            {"time": time, "level": level, "msg": msg, **fields}, default=str, ensure_ascii=False
        )
    else:
        parts = [time, level, msg.replace("\n", "\\n")]
        parts += [f"{k}={_logfmt_value(v)}" for k, v in fields.items()]
        line = " ".join(parts)
    return redact(line)
