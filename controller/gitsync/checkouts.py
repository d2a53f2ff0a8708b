"""The checkouts of git_sync and the atomic switch of the DAGs directory.

Layout under `<DAGU_HOME>/gitsync/`: `mirror.git` (the fetched commits), `checkouts/<commit>`
(one work tree per commit, never changed once made), `askpass` and `status.json`. The DAGs
directory (`paths.dagsDir`) is a symlink to `checkouts/<commit>/<path>`; `switch` replaces it
with `rename(2)`, which is atomic: a reader of the DAGs directory sees the old tree or the new
one, never a mix (the git-sync sidecar's pattern).

`unused_checkouts` decides, without I/O, which checkouts may be removed.
Callers: `controller.gitsync.sync`, `controller.revision`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class Layout:
    """Where git_sync keeps its files for one DAGU_HOME."""

    root: Path  # <DAGU_HOME>/gitsync

    @property
    def mirror(self) -> Path:
        """The local bare repository."""
        return self.root / "mirror.git"

    @property
    def checkouts(self) -> Path:
        """The directory of the per-commit checkouts."""
        return self.root / "checkouts"

    @property
    def askpass(self) -> Path:
        """The askpass script that hands the token to git."""
        return self.root / "askpass"

    @property
    def status_file(self) -> Path:
        """The last sync's status, read by the API."""
        return self.root / "status.json"

    def checkout(self, commit: str) -> Path:
        """The checkout of `commit`."""
        return self.checkouts / commit


def layout_for(home: Path) -> Layout:
    """The git_sync layout of a DAGU_HOME."""
    return Layout(home / "gitsync")


def is_commit(name: str) -> bool:
    """Whether `name` is a full commit id (SHA-1 or SHA-256), i.e. a checkout's name."""
    return bool(_COMMIT.match(name))


def current_target(link: Path) -> Path | None:
    """Where the symlink `link` points (absolute), or None when it is not a symlink."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return (link.parent / target).resolve()


def switch(link: Path, target: Path) -> None:
    """Point the symlink `link` at `target` atomically: a new link beside it, renamed over it.
    Raises `OSError` when `link` is a real directory (dagloop will not delete it)."""
    if link.is_dir() and not link.is_symlink():
        if any(link.iterdir()):
            raise OSError(f"{link} is a directory, not a symlink: move it away for git_sync")
        link.rmdir()  # an empty DAGs directory (a fresh DAGU_HOME) is replaced by the link
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


def unused_checkouts(
    existing: Iterable[str], *, current: str | None, in_use: Iterable[str]
) -> list[str]:
    """The checkouts (commit names) that may be removed: not the current one, and no run
    that is still active started from it. Names that are not commits are never touched."""
    keep = {c for c in in_use if c}
    if current:
        keep.add(current)
    return sorted(name for name in existing if is_commit(name) and name not in keep)
