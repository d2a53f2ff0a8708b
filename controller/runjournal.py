"""The runner's local journal of state writes the database refused: one JSON line per write,
in order, in `logs/<dag>/<run-id>/<attempt>/store-journal.jsonl`, next to the run's logs.

A runner that cannot write keeps its changes in memory and here, so that nothing is lost if
it is killed before the database is back: whoever reaps the run (`controller.liveness`)
applies the journal first. Every write sets absolute column values, so applying one twice
changes nothing. The file is removed once everything in it is in the database.

Written by `controller.engine.writes`; read by `controller.liveness`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_FILE", "StateWrite", "append", "journal_path", "read", "remove"]

JOURNAL_FILE = "store-journal.jsonl"

# One write of a run: changed columns per step row id, and changed columns of the run itself.
StateWrite = tuple[Mapping[int, Mapping[str, Any]], Mapping[str, Any]]


def journal_path(log_dir: Path) -> Path:
    """The journal of the run attempt whose logs are in `log_dir`."""
    return log_dir / JOURNAL_FILE


def append(path: Path, writes: Sequence[StateWrite]) -> None:
    """Append `writes` in order. Flushed to the kernel at once (a killed runner loses
    nothing); not fsynced: only the host's power loss could drop it, and then the runner's
    steps are gone too."""
    lines = "".join(
        json.dumps({"steps": {str(k): dict(v) for k, v in steps.items()}, "run": dict(run)}) + "\n"
        for steps, run in writes
    )
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)


def read(path: Path) -> list[StateWrite]:
    """The writes of the journal at `path`, in order (none when there is no journal). A last
    line cut short by a kill is left out: its write was also still in memory only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[StateWrite] = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            break
        out.append(({int(k): v for k, v in doc["steps"].items()}, doc["run"]))
    return out


def remove(path: Path) -> None:
    """Remove the journal: everything in it is in the database."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
