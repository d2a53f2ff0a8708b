"""Test-only fault injection: die as if by ``kill -9`` at a named state-write point.

``DAGLOOP_FAULT_POINT=<name>[:<n>]`` makes this process call ``os._exit(137)`` the n-th time
(default: the first) it reaches `point(name)`. Points: ``commit.before`` / ``commit.after``
(every store transaction, just before and just after COMMIT) and ``apply.launch.recorded``
(the applier inserted a run and has not spawned its runner yet). tests/faults loops over them
to prove that a crash at any write leaves a valid store (issue 8 #21).

Never set it in production. The variable is read once at import; an unset variable costs one
string comparison per point. Callers: `controller.store.store`, `controller.loop.apply`.
"""

from __future__ import annotations

import os

__all__ = ["point"]

_NAME, _, _NTH = os.environ.get("DAGLOOP_FAULT_POINT", "").partition(":")
_TARGET = int(_NTH) if _NTH.isdigit() else 1
_seen = 0


def point(name: str) -> None:
    """Exit at once with status 137 if this is the configured fault point (test only)."""
    global _seen
    if not _NAME or name != _NAME:
        return
    _seen += 1
    if _seen == _TARGET:
        os._exit(137)
