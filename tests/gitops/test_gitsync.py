"""git_sync against a real bare repository over file:// with the real `git` command: first
sync, a commit adding, changing and removing DAGs, a broken commit, a force-push, an
unreachable remote, old checkouts, and a token that never leaks."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.engine.expand import filtered_os_env
from controller.gitsync import git as gitcmd
from controller.gitsync.checkouts import unused_checkouts
from controller.gitsync.status import read_status
from controller.gitsync.sync import GitSync
from model.config import Settings, load_settings
from tests.gitops.gitrepo import Remote, dag

TOKEN = "ghp_s3cr3t-t0ken-value"


def settings_for(tmp_path: Path, url: str, **extra: str) -> Settings:
    env = {
        "DAGU_HOME": str(tmp_path / "home"),
        "DAGU_GITSYNC_ENABLED": "true",
        "DAGU_GITSYNC_REPOSITORY": url,
        "DAGU_GITSYNC_PATH": "dags",
        **extra,
    }
    return load_settings(env=env)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


def test_settings_take_daguss_git_sync_keys_from_file_and_env(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        "git_sync:\n  enabled: true\n  repository: file:///r.git\n  branch: prod\n"
        "  path: dags\n  auth: {type: ssh, ssh_key_path: /k}\n"
        "  auto_sync: {enabled: false, on_startup: false, interval: 60}\n"
    )
    s = load_settings(env={"DAGU_HOME": str(home), "DAGU_GITSYNC_BRANCH": "stage"})
    assert (s.gitsync_enabled, s.gitsync_repository, s.gitsync_branch) == (
        True,
        "file:///r.git",
        "stage",
    )
    assert (s.gitsync_path, s.gitsync_auth_type, s.gitsync_auth_ssh_key_path) == (
        "dags",
        "ssh",
        Path("/k"),
    )
    assert not s.gitsync_autosync_enabled and not s.gitsync_autosync_on_startup
    assert s.gitsync_autosync_interval_seconds == 60.0


def test_first_sync_points_the_dags_dir_at_a_checkout_of_the_branch(
    tmp_path: Path, remote: Remote
) -> None:
    commit = remote.commit({"dags/a.yaml": dag(), "README.md": "x"})
    s = settings_for(tmp_path, remote.url)
    sync = GitSync(s, clock=time.time)

    def remote_files() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in remote.bare.rglob("*")}

    before = remote_files()
    status = sync.sync()
    assert remote_files() == before  # dagloop never writes to the repository
    assert status.last_sync_status == "synced" and status.last_sync_commit == commit
    assert s.dags_dir.is_symlink()
    assert s.dags_dir.resolve() == (s.home / "gitsync" / "checkouts" / commit / "dags").resolve()
    assert sorted(p.name for p in s.dags_dir.iterdir()) == ["a.yaml"]
    stored = read_status(s.home / "gitsync" / "status.json")
    assert stored is not None and stored.to_json()["counts"] == {"synced": 1}


def test_new_commit_adds_changes_and_removes_dags_in_one_log_line(
    tmp_path: Path, remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    remote.commit({"dags/a.yaml": dag(), "dags/b.yaml": dag()})
    s = settings_for(tmp_path, remote.url)
    sync = GitSync(s, clock=time.time)
    sync.sync()
    commit = remote.commit(
        {"dags/a.yaml": dag("echo 2"), "dags/b.yaml": None, "dags/c.yaml": dag()}
    )
    with caplog.at_level(logging.INFO, logger="dagloop.gitsync"):
        sync.sync()
    assert sorted(p.name for p in s.dags_dir.iterdir()) == ["a.yaml", "c.yaml"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"git sync: main at {commit[:12]}: added c; changed a; removed b"]


def test_commit_with_an_invalid_dag_keeps_the_current_revision_and_reports_it(
    tmp_path: Path, remote: Remote
) -> None:
    good = remote.commit({"dags/a.yaml": dag(), "dags/b.yaml": dag()})
    s = settings_for(tmp_path, remote.url)
    sync = GitSync(s, clock=time.time)
    sync.sync()
    remote.commit({"dags/b.yaml": "steps: [\n"})
    status = sync.sync()
    assert status.last_sync_status == "error" and status.last_sync_commit == good
    assert status.last_error is not None and "b.yaml" in status.last_error
    assert "not used" in status.last_error
    states = {i.dag_id: i.state for i in status.items}
    assert states == {"a": "pending", "b": "invalid"}  # which file broke the commit
    assert s.dags_dir.resolve().parent.name == good


def test_force_push_rewinding_the_branch_is_followed(tmp_path: Path, remote: Remote) -> None:
    first = remote.commit({"dags/a.yaml": dag()})
    remote.commit({"dags/a.yaml": dag("echo later")})
    s = settings_for(tmp_path, remote.url)
    sync = GitSync(s, clock=time.time)
    sync.sync()
    remote.rewind(first)
    status = sync.sync()
    assert status.last_sync_status == "synced" and status.last_sync_commit == first
    assert "echo later" not in (s.dags_dir / "a.yaml").read_text()


def test_unreachable_remote_keeps_the_revision_and_reports_the_error(
    tmp_path: Path, remote: Remote
) -> None:
    commit = remote.commit({"dags/a.yaml": dag()})
    s = settings_for(tmp_path, remote.url)
    GitSync(s, clock=time.time).sync()
    remote.bare.rename(tmp_path / "gone.git")
    sync = GitSync(s, clock=time.time)
    status = sync.sync()
    assert status.last_sync_status == "error" and status.failures == 1
    assert status.last_sync_commit == commit  # still running it
    assert s.dags_dir.resolve().parent.name == commit
    assert "still running" in status.to_json()["summary"]


def test_unknown_branch_is_reported(tmp_path: Path, remote: Remote) -> None:
    remote.commit({"dags/a.yaml": dag()})
    s = settings_for(tmp_path, remote.url, DAGU_GITSYNC_BRANCH="nope")
    status = GitSync(s, clock=time.time).sync()
    assert status.last_sync_status == "error" and "nope" in (status.last_error or "")
    assert not s.dags_dir.is_symlink()


def test_checkouts_are_removed_once_neither_current_nor_used_by_a_run(
    tmp_path: Path, remote: Remote
) -> None:
    one = remote.commit({"dags/a.yaml": dag()})
    s = settings_for(tmp_path, remote.url)
    sync = GitSync(s, clock=time.time)
    sync.sync()
    two = remote.commit({"dags/a.yaml": dag("echo 2")})
    sync.sync(in_use={one})  # a run started from `one` is still active
    checkouts = s.home / "gitsync" / "checkouts"
    assert sorted(p.name for p in checkouts.iterdir()) == sorted([one, two])
    three = remote.commit({"dags/a.yaml": dag("echo 3")})
    sync.sync(in_use=set())  # `two` was current until this round: kept one more round
    assert sorted(p.name for p in checkouts.iterdir()) == sorted([two, three])
    four = remote.commit({"dags/a.yaml": dag("echo 4")})
    sync.sync(in_use=set())
    assert sorted(p.name for p in checkouts.iterdir()) == sorted([three, four])


def test_unused_checkouts_never_names_the_current_one_or_non_commits() -> None:
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    assert unused_checkouts([a, b, c, "tmp"], current=a, in_use=[b, ""]) == [c]


def test_token_stays_out_of_argv_urls_logs_and_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A remote that refuses the connection: git gets as far as reporting an error.
    url = "http://127.0.0.1:9/repo.git"
    s = settings_for(tmp_path, url, DAGU_GITSYNC_AUTH_TOKEN=TOKEN)
    sync = GitSync(s, clock=time.time)
    auth = gitcmd.GitAuth(token=TOKEN, askpass=sync.layout.askpass)
    command = gitcmd.fetch(sync.layout.mirror, url, "main", "refs/x", auth)
    assert TOKEN not in " ".join(command.argv)
    with caplog.at_level(logging.INFO):
        status = sync.sync()
    assert status.last_sync_status == "error"
    assert TOKEN not in caplog.text
    assert TOKEN not in (s.home / "gitsync" / "status.json").read_text()
    # git gets the token from the askpass script, through the environment only.
    script = sync.layout.askpass
    assert TOKEN not in script.read_text()
    said = subprocess.run(
        [str(script), "Password for 'http://127.0.0.1:9': "],
        env={**os.environ, **gitcmd.auth_env(auth)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert said.strip() == TOKEN


def test_url_user_info_is_redacted() -> None:
    assert gitcmd.redact_url("https://u:p@host/x.git") == "https://***@host/x.git"


class _AuthServer(ThreadingHTTPServer):
    """An HTTP git remote that asks for credentials (401), records what it was sent, and
    while git is connected looks through every process's command line for the token."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AuthHandler)
        self.authorizations: list[str] = []
        self.token_in_process_list = False


class _AuthHandler(BaseHTTPRequestHandler):
    server: _AuthServer

    def do_GET(self) -> None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if TOKEN.encode() in cmdline.read_bytes():
                    self.server.token_in_process_list = True
            except OSError:
                continue
        header = self.headers.get("Authorization")
        if header:
            self.server.authorizations.append(header)
        self.send_response(401 if not header else 403)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_token_reaches_an_http_remote_through_askpass_and_nowhere_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _AuthServer()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dags.git"
        s = settings_for(tmp_path, url, DAGU_GITSYNC_AUTH_TOKEN=TOKEN)
        with caplog.at_level(logging.INFO):
            status = GitSync(s, clock=time.time).sync()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    sent = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert f"Basic {sent}" in server.authorizations  # git got it, from the askpass script
    assert not server.token_in_process_list
    assert status.last_sync_status == "error"
    assert TOKEN not in caplog.text and TOKEN not in json.dumps(status.to_json())


def test_git_sync_token_never_reaches_a_step_whatever_the_secret_patterns() -> None:
    env = {"DAGU_GITSYNC_AUTH_TOKEN": TOKEN, "DAGU_GITSYNC_BRANCH": "main"}
    assert filtered_os_env(env, secret_patterns=()) == {"DAGU_GITSYNC_BRANCH": "main"}
