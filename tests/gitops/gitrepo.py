"""A real git remote for the GitOps tests: a bare repository served over `file://`, and a work
clone the tests commit (and force-push) from, with the real `git` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd`; its stdout (raises on failure)."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Remote:
    """A bare repository (`url`, file://) and a clone to commit from, on branch `main`."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        git("remote", "add", "origin", self.url, cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) `files` (paths in the repository), commit, push;
        the new commit."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def rewind(self, commit: str) -> None:
        """Force-push the branch back to `commit`."""
        git("reset", "--quiet", "--hard", commit, cwd=self.work)
        git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=self.work)


def dag(command: str = "true", schedule: str | None = None) -> str:
    """A one-step DAG file."""
    head = f'schedule: "{schedule}"\n' if schedule else ""
    return f"{head}steps:\n  - name: s\n    command: '{command}'\n"
