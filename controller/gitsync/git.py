"""Running `git`, with credentials kept out of argv, URLs and logs.

We drive the `git` executable rather than a library (GitPython, dulwich, pygit2): it is what
the teams' CI and the git-sync sidecar already use, it speaks every transport (`file://`,
https, ssh) with the user's own configuration, and a command line is easy to reproduce when a
sync fails. A token reaches git through `GIT_ASKPASS` (a script that prints an environment
variable), so it is never in a command line (`ps`) or a URL (which git would print in errors).

`GitCommand` is a value (argv and the extra environment); `run` is the only I/O here.
Callers: `controller.gitsync.sync`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIT_TIMEOUT_SECONDS = 120.0
TOKEN_ENV = "DAGLOOP_GITSYNC_TOKEN"  # read by the askpass script, set only for git's process
ASKPASS_SCRIPT = """#!/bin/sh
# dagloop's askpass: git asks for a user name, then a password; the token is the password.
case "$1" in
  Username*) printf '%s\\n' "${DAGLOOP_GITSYNC_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "$DAGLOOP_GITSYNC_TOKEN" ;;
esac
"""
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


class GitError(Exception):
    """A git command failed; the message is git's own error text, credentials removed."""


@dataclass(frozen=True)
class GitAuth:
    """How git authenticates: a token (through askpass), an ssh key file, or nothing."""

    token: str | None = None
    ssh_key_path: Path | None = None
    askpass: Path | None = None  # the askpass script (written by `write_askpass`)


@dataclass(frozen=True)
class GitCommand:
    """One git invocation: its arguments and the environment it adds."""

    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        """The command line: `git` and the arguments (never a credential)."""
        return ["git", *self.args]


def redact_url(url: str) -> str:
    """`url` without its user info (`https://user:pw@host/x` -> `https://***@host/x`)."""
    return _USERINFO.sub(r"\g<scheme>***@", url)


def auth_env(auth: GitAuth) -> dict[str, str]:
    """The environment that gives git the credentials and keeps it from prompting."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if auth.token and auth.askpass is not None:
        env["GIT_ASKPASS"] = str(auth.askpass)
        env[TOKEN_ENV] = auth.token
    if auth.ssh_key_path is not None:
        # BatchMode: fail instead of asking for a passphrase on a terminal nobody watches.
        env["GIT_SSH_COMMAND"] = (
            f"ssh -i '{auth.ssh_key_path}' -o IdentitiesOnly=yes -o BatchMode=yes"
        )
    return env


def write_askpass(path: Path) -> Path:
    """Write the askpass script (owner-only) if it is missing or different; returns `path`."""
    try:
        if path.read_text(encoding="utf-8") == ASKPASS_SCRIPT:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(ASKPASS_SCRIPT, encoding="utf-8")
    tmp.chmod(0o700)
    os.replace(tmp, path)
    return path


def init_mirror(git_dir: Path) -> GitCommand:
    """Create the local bare repository that holds fetched commits."""
    return GitCommand(("init", "--quiet", "--bare", str(git_dir)))


def fetch(git_dir: Path, url: str, branch: str, ref: str, auth: GitAuth) -> GitCommand:
    """Fetch `branch` of `url` into the local `ref`, forced: a force-push that rewinds the
    branch is followed, as the remote is the desired state."""
    refspec = f"+refs/heads/{branch}:{ref}"
    args = ("--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", url, refspec)
    return GitCommand(args, auth_env(auth))


def rev_parse(git_dir: Path, ref: str) -> GitCommand:
    """The commit `ref` names."""
    return GitCommand(("--git-dir", str(git_dir), "rev-parse", "--verify", f"{ref}^{{commit}}"))


def add_worktree(git_dir: Path, directory: Path, commit: str) -> GitCommand:
    """Check `commit` out into its own directory (a detached work tree of the mirror)."""
    args = ("--git-dir", str(git_dir), "worktree", "add", "--quiet", "--detach", "--force")
    return GitCommand((*args, str(directory), commit))


def remove_worktree(git_dir: Path, directory: Path) -> GitCommand:
    """Remove a checkout made by `add_worktree`."""
    return GitCommand(("--git-dir", str(git_dir), "worktree", "remove", "--force", str(directory)))


def prune_worktrees(git_dir: Path) -> GitCommand:
    """Forget work trees whose directories are gone."""
    return GitCommand(("--git-dir", str(git_dir), "worktree", "prune"))


def run(command: GitCommand, *, secrets: tuple[str, ...] = ()) -> str:
    """Run `command`; its stdout. Raises `GitError` with git's message, with `secrets` and URL
    user info removed from it."""
    env = {**os.environ, **command.env}
    try:
        done = subprocess.run(
            command.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(scrub(str(exc), secrets)) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        message = "; ".join(lines) or f"git {command.args[2:3]} exited {done.returncode}"
        raise GitError(scrub(message, secrets))
    return done.stdout.strip()


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` without the `secrets` and without user info in URLs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "*****")
    return redact_url(text)
