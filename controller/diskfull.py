"""Reporting a full disk (issue 8 #22): one clear line naming the path and the errno.

Owns the wording of "no space left" errors and the check whether a file system has no free
block left. SQLite and a step writing straight into its log file both lose the errno on the
way to us (SQLite says "database or disk is full" / "disk I/O error"; a step just exits
non-zero, and its stderr went to the same full disk), so the callers ask `is_full` about the
directory they wrote to and name ENOSPC when it says so.

Called by `controller.store.store` (write errors), `controller.engine.launch` (the run log) and
`controller.engine.runner` (a failed step on a full log disk). No state; only `os.statvfs`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["ENOSPC_TEXT", "describe_os_error", "full_note", "is_full", "mentions_enospc"]

ENOSPC_TEXT = f"no space left on device (ENOSPC, errno {errno.ENOSPC})"
_ENOSPC_MARK = f"(ENOSPC, errno {errno.ENOSPC})"


def mentions_enospc(text: str) -> bool:
    """Whether an error text written by this module (or `describe_os_error`) names ENOSPC;
    used to count `disk_full` errors."""
    return _ENOSPC_MARK in text


def is_full(path: Path | str) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has no block
    left for an unprivileged write; False when that cannot be told."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_blocks > 0 and st.f_bavail == 0


def full_note(path: Path | str) -> str:
    """`"; no space left on device (ENOSPC, errno 28) on PATH"` when `path`'s file system is
    full, else ""; appended to an error whose errno was lost."""
    return f"; {ENOSPC_TEXT} on {path}" if is_full(path) else ""


def describe_os_error(exc: OSError, path: Path | str | None = None) -> str:
    """`PATH: No space left on device (ENOSPC, errno 28)`: the path, the text and the errno
    name and number of an `OSError`, on one line."""
    where = path if path is not None else exc.filename
    number = exc.errno
    if number is None:
        text = str(exc)
    else:
        name = errno.errorcode.get(number, "?")
        text = f"{exc.strerror or os.strerror(number)} ({name}, errno {number})"
    return f"{where}: {text}" if where is not None else text
