"""The revision of a run: which DAG text it ran, and from which git commit.

The digest is `sha256:` of the DAG text the run used (its `spec_yaml`, stored with every run), so
two runs with the same digest ran the same spec whatever the file system said. When the DAG file
lies in a git work tree (a `git_sync` checkout, a git-sync sidecar's worktree, or a plain
checkout updated by CI), the run also records the commit of that tree and whether the text
differed from the file in that commit (`dirty`: an edit in place, or a last-known-good version).

The commit of a `git_sync` checkout is its directory name, and its files never change, so the
text is compared with the file (no subprocess); elsewhere one `git rev-parse` answers both the
commit and the committed file's blob, which is compared with the git blob id of the text. A
directory outside any work tree costs a walk up to `/` and no subprocess.

Callers: the applier (`controller.loop.apply`, scheduled and queued runs), the engine's `start`
(manual runs) and the read models (`controller.views.runs`).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from controller.gitsync.checkouts import is_commit

GIT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Revision:
    """The git side of a run's revision ('' commit: not in a git work tree)."""

    commit: str = ""
    dirty: bool = False


def digest(text: str) -> str:
    """`sha256:<hex>` of a DAG text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def revision_document(commit: str, dirty: bool, spec_text: str) -> dict[str, object]:
    """The `revision` object of run details: `{"commit", "digest", "dirty"}` (commit null when
    the DAG was not in git)."""
    return {"commit": commit or None, "digest": digest(spec_text), "dirty": dirty}


def blob_id(data: bytes) -> str:
    """git's object id of a blob with `data` (SHA-1 repositories)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _in_work_tree(directory: Path) -> bool:
    return any((d / ".git").exists() for d in (directory, *directory.parents))


def _checkout_commit(real: Path) -> str | None:
    """The commit of a `git_sync` checkout (`…/gitsync/checkouts/<commit>/…`), else None."""
    parts = real.parts
    for i in range(len(parts) - 2):
        if parts[i] == "gitsync" and parts[i + 1] == "checkouts" and is_commit(parts[i + 2]):
            return parts[i + 2]
    return None


def revision_of(path: Path, text: str) -> Revision:
    """The revision of DAG `text` taken from the file `path` (symlinks resolved here)."""
    real = path.resolve()
    directory = real.parent
    if not _in_work_tree(directory):
        return Revision()
    data = text.encode("utf-8")
    commit = _checkout_commit(real)
    if commit is not None:
        # A git_sync checkout never changes once made: comparing with the file is the dirty
        # check, without a git process per launch at a busy minute boundary.
        try:
            return Revision(commit, real.read_bytes() != data)
        except OSError:
            return Revision(commit, True)
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD", f"HEAD:./{real.name}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return Revision()
    lines = done.stdout.split()
    if not lines or not is_commit(lines[0]):
        return Revision()  # no commit yet, or git is missing
    committed = lines[1] if done.returncode == 0 and len(lines) > 1 else None
    # An untracked file, or text that is not the committed blob, differs from the commit.
    return Revision(lines[0], committed != blob_id(data))


def changed_since(path: Path, spec_text: str) -> bool | None:
    """Whether the DAG file at `path` now differs from the text a run used (None: the file
    is gone or unreadable), for `dagloop status` and the dashboard."""
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return current != spec_text
