"""The revision of a DAG text read from a plain git checkout (as CI updates one), a git_sync
checkout and a directory outside git, with the real `git` command."""

from __future__ import annotations

import hashlib
from pathlib import Path

from controller.revision import Revision, digest, revision_of
from tests.gitops.gitrepo import Remote, dag, git


def test_committed_file_has_its_commit_and_is_clean(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    commit = remote.commit({"dags/a.yaml": dag()})
    path = remote.work / "dags" / "a.yaml"
    assert revision_of(path, path.read_text()) == Revision(commit, False)


def test_edited_or_untracked_file_is_dirty(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    commit = remote.commit({"dags/a.yaml": dag()})
    path = remote.work / "dags" / "a.yaml"
    assert revision_of(path, dag("echo edited")) == Revision(commit, True)
    new = remote.work / "dags" / "new.yaml"
    new.write_text(dag())
    assert revision_of(new, new.read_text()) == Revision(commit, True)


def test_symlinked_dags_dir_reports_the_commit_of_the_tree_it_points_at(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    first = remote.commit({"dags/a.yaml": dag()})
    worktree = tmp_path / "worktrees" / first
    git("worktree", "add", "--detach", str(worktree), first, cwd=remote.work)
    remote.commit({"dags/a.yaml": dag("echo 2")})
    link = tmp_path / "dags"
    link.symlink_to(worktree / "dags")
    assert revision_of(link / "a.yaml", dag()) == Revision(first, False)


def test_file_outside_git_has_no_commit(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(dag())
    assert revision_of(path, dag()) == Revision("", False)


def test_digest_is_sha256_of_the_text() -> None:
    assert digest("x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
