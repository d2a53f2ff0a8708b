"""One git sync: fetch the branch, check the commit out into its own directory, validate every
DAG file of it, switch the DAGs directory to it atomically, remove checkouts nobody uses, and
write the status.

A failed fetch (auth, network, unknown branch) or a commit with an invalid DAG file changes
nothing the controller reads: the DAGs directory keeps pointing at the last good commit, and
the error goes to the status (API, metrics, dashboard) and one log line. A force-push that
rewinds the branch is followed like any other commit: the remote branch is the desired state.

Callers: the control loop (`controller.loop.controller`), on start-up when
`git_sync.auto_sync.on_startup` and every `git_sync.auto_sync.interval` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from controller.catalog import DAG_SUFFIXES, Catalog
from controller.gitsync import git
from controller.gitsync.checkouts import (
    Layout,
    current_target,
    is_commit,
    layout_for,
    switch,
    unused_checkouts,
)
from controller.gitsync.status import (
    ERROR,
    INVALID,
    PENDING,
    SYNCED,
    SyncItem,
    SyncStatus,
    write_status,
)
from model.config import Settings

log = logging.getLogger("dagloop.gitsync")

SYNC_REF = "refs/dagloop/sync"  # where the fetched branch lands in the mirror


@dataclass(frozen=True)
class Changes:
    """DAG files (stems) added, changed and removed by a switch."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def describe(self) -> str:
        """`added a, b; changed c; removed d` (or `no DAG changed`)."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if names
        ]
        return "; ".join(parts) or "no DAG changed"


def diff_trees(old: dict[str, str], new: dict[str, str]) -> Changes:
    """What changed between two {stem: digest} maps of DAG files."""
    return Changes(
        added=tuple(sorted(set(new) - set(old))),
        changed=tuple(sorted(k for k in set(new) & set(old) if new[k] != old[k])),
        removed=tuple(sorted(set(old) - set(new))),
    )


def dag_digests(directory: Path | None) -> dict[str, str]:
    """{stem: sha256 of the file} of the DAG files of `directory` ({} when it is missing)."""
    out: dict[str, str] = {}
    if directory is None or not directory.is_dir():
        return out
    for path in sorted(directory.iterdir()):
        if path.suffix in DAG_SUFFIXES and path.stem != "base" and not path.name.startswith("."):
            try:
                out[path.stem] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
    return out


def validate_tree(directory: Path, settings: Settings) -> tuple[SyncItem, ...]:
    """Every DAG file of `directory` loaded as the catalog would load it: one item each."""
    catalog = Catalog(directory, settings.base_config, max_file_bytes=settings.max_dag_file_bytes)
    catalog.refresh()
    return tuple(
        SyncItem(e.file_name, INVALID if e.errors else SYNCED, tuple(str(x) for x in e.errors))
        for e in catalog.entries()
    )


class RefusedCommit(git.GitError):
    """A fetched commit with an invalid DAG file: not switched to. `items`: its files, the
    invalid ones with their errors, the others `pending`."""

    def __init__(self, message: str, items: tuple[SyncItem, ...]) -> None:
        super().__init__(message)
        self.items = items


class GitSync:
    """The git_sync of one DAGU_HOME: `sync()` does one round, `due()` says when."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.layout: Layout = layout_for(settings.home)
        self.status = SyncStatus(
            enabled=True,
            repository=git.redact_url(settings.gitsync_repository or ""),
            branch=settings.gitsync_branch,
            last_sync_commit=self.current_commit(),
        )
        first = settings.gitsync_autosync_on_startup
        self._next_at: float | None = clock() if first else self._after(clock())

    def _after(self, now: float) -> float | None:
        if not self.settings.gitsync_autosync_enabled:
            return None
        return now + self.settings.gitsync_autosync_interval_seconds

    def due(self, now: float) -> bool:
        """Whether a sync is due at `now`."""
        return self._next_at is not None and now >= self._next_at

    def next_at(self) -> float | None:
        """When the next sync is due (None: never, auto sync off)."""
        return self._next_at

    def current_commit(self) -> str | None:
        """The commit the DAGs directory points at (None: not a git_sync checkout)."""
        target = current_target(self.settings.dags_dir)
        if target is None:
            return None
        try:
            relative = target.relative_to(self.layout.checkouts.resolve())
        except ValueError:
            return None
        name = relative.parts[0] if relative.parts else ""
        return name if is_commit(name) else None

    def sync(self, *, in_use: Iterable[str] = ()) -> SyncStatus:
        """One round; `in_use`: commits that active runs started from (kept on disk, as is
        the checkout the DAGs directory pointed at before this round)."""
        now = self.clock()
        self._next_at = self._after(now)
        token = self.settings.gitsync_auth_token or ""
        # The previous checkout is kept one more round: a catalog rescan that resolved the
        # DAGs directory just before the switch may still be reading it.
        previous = self.current_commit()
        try:
            commit, items, changes = self._pull(token)
        except RefusedCommit as exc:
            return self._failed(now, str(exc), items=exc.items)
        except git.GitError as exc:
            return self._failed(now, str(exc))
        except OSError as exc:
            return self._failed(now, git.scrub(str(exc), (token,)))
        self.status = replace(
            self.status,
            last_sync_at=now,
            last_sync_commit=commit,
            last_sync_status=SYNCED,
            last_error=None,
            last_success_at=now,
            items=items,
        )
        self._write()
        log.info(
            "git sync: %s at %s: %s",
            self.settings.gitsync_branch,
            commit[:12],
            changes.describe() if changes is not None else "unchanged",
            extra={"commit": commit},
        )
        self._collect(commit, {*in_use, previous or ""})
        return self.status

    def _pull(self, token: str) -> tuple[str, tuple[SyncItem, ...], Changes | None]:
        """Fetch, check out, validate and switch; (commit, items, changes or None when the
        DAGs directory already pointed at the commit). Raises GitError on any refusal."""
        layout, s = self.layout, self.settings
        if not (layout.mirror / "HEAD").exists():
            layout.root.mkdir(parents=True, exist_ok=True)
            git.run(git.init_mirror(layout.mirror))
        auth = git.GitAuth(
            token=s.gitsync_auth_token if s.gitsync_auth_type == "token" else None,
            ssh_key_path=s.gitsync_auth_ssh_key_path if s.gitsync_auth_type == "ssh" else None,
            askpass=git.write_askpass(layout.askpass) if token else None,
        )
        url = s.gitsync_repository or ""
        secrets = (token,)
        git.run(git.fetch(layout.mirror, url, s.gitsync_branch, SYNC_REF, auth), secrets=secrets)
        commit = git.run(git.rev_parse(layout.mirror, SYNC_REF))
        if commit == self.current_commit():
            return commit, self.status.items, None
        checkout = layout.checkout(commit)
        if not (checkout / ".git").exists():
            shutil.rmtree(checkout, ignore_errors=True)  # a checkout a crash left half made
            git.run(git.prune_worktrees(layout.mirror))
            layout.checkouts.mkdir(parents=True, exist_ok=True)
            git.run(git.add_worktree(layout.mirror, checkout, commit))
        tree = checkout / s.gitsync_path if s.gitsync_path else checkout
        if not tree.is_dir():
            raise git.GitError(f"commit {commit[:12]} has no directory {s.gitsync_path!r}")
        items = validate_tree(tree, s)
        bad = [i for i in items if i.errors]
        if bad:
            first = bad[0].errors[0] if bad[0].errors else bad[0].dag_id
            raise RefusedCommit(
                f"commit {commit[:12]} not used: {len(bad)} invalid DAG file(s): {first}",
                tuple(i if i.errors else replace(i, state=PENDING) for i in items),
            )
        changes = diff_trees(dag_digests(current_target(s.dags_dir)), dag_digests(tree))
        switch(s.dags_dir, tree)
        return commit, items, changes

    def _failed(
        self, now: float, error: str, *, items: tuple[SyncItem, ...] | None = None
    ) -> SyncStatus:
        """Record a failed round; `items`: those of a refused commit (else unchanged)."""
        self.status = replace(
            self.status,
            last_sync_at=now,
            last_sync_status=ERROR,
            last_error=error,
            failures=self.status.failures + 1,
            items=self.status.items if items is None else items,
        )
        self._write()
        current = self.status.last_sync_commit
        log.error(
            "git sync failed, keeping %s: %s",
            current[:12] if current else "the current DAGs",
            error,
        )
        return self.status

    def _write(self) -> None:
        try:
            write_status(self.layout.status_file, self.status)
        except OSError as exc:  # the status is informative; the sync itself happened
            log.warning("cannot write the git sync status: %s", exc)

    def _collect(self, current: str, in_use: Iterable[str]) -> None:
        """Remove the checkouts of commits that are neither current nor used by a run."""
        try:
            existing = [p.name for p in self.layout.checkouts.iterdir()]
        except OSError:
            return
        for name in unused_checkouts(existing, current=current, in_use=in_use):
            try:
                git.run(git.remove_worktree(self.layout.mirror, self.layout.checkout(name)))
            except git.GitError:
                shutil.rmtree(self.layout.checkout(name), ignore_errors=True)
        try:
            git.run(git.prune_worktrees(self.layout.mirror))
        except git.GitError as exc:
            log.warning("git worktree prune failed: %s", exc)
