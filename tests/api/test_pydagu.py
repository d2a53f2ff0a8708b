"""The real Python client of Dagu's API, pydagu 0.2.4 (PyPI), against a real `dagloop server`:
it reads a DAG spec and run statuses (an id, `latest`, a run in progress) as from Dagu, and its
write calls get a clear 405. Skipped when pydagu is not installed (`pip install pydagu==0.2.4`).
Runs are made by the real `dagloop start` so the node shapes are the runner's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pydagu_http = pytest.importorskip(
    "pydagu.http", reason="pydagu is not installed: pip install pydagu==0.2.4"
)

from tests.api.conftest import LiveServer, make_home, start_server, stop_server  # noqa: E402
from tests.helpers import dagu_home, run_cli, wait_until  # noqa: E402

PYD = """\
name: pyd
description: read by pydagu
schedule: "0 2 * * *"
tags: [compat]
params:
  - NAME: world
steps:
  - name: first
    command: echo hello ${NAME}
  - name: second
    command: echo done
    depends: first
"""

SLOW = """\
steps:
  - name: wait
    command: sleep 30
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    home = make_home(tmp_path)
    (home.settings.dags_dir / "pyd.yaml").write_text(PYD)
    (home.settings.dags_dir / "slow.yaml").write_text(SLOW)
    live = start_server(home)
    try:
        yield live
    finally:
        stop_server(live)


def env_of(server: LiveServer) -> dict[str, str]:
    env = dagu_home(server.home.root.parent)
    env["DAGU_HOME"] = str(server.home.root)
    return env


def test_pydagu_reads_the_spec(server: LiveServer) -> None:
    dag = pydagu_http.DaguHttpClient("pyd", server.url).get_dag_spec()
    assert dag.name == "pyd" and dag.schedule == "0 2 * * *"
    assert [s.name for s in dag.steps] == ["first", "second"]


def test_pydagu_reads_a_finished_run_by_id_and_latest(server: LiveServer) -> None:
    code, _out, err = run_cli("start", "pyd", env=env_of(server), timeout=60)
    assert code == 0, err
    client = pydagu_http.DaguHttpClient("pyd", server.url)
    latest = client.get_dag_run_status("latest")
    assert latest.statusLabel == "succeeded" and latest.status == 4
    assert [n.step.name for n in latest.nodes] == ["first", "second"]
    assert all(n.statusLabel == "succeeded" for n in latest.nodes)
    assert latest.startedAt is not None and latest.finishedAt is not None
    by_id = client.get_dag_run_status(latest.dagRunId)
    assert by_id.dagRunId == latest.dagRunId


def test_pydagu_reads_a_run_in_progress(server: LiveServer) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "start", "slow"],
        env=env_of(server),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client = pydagu_http.DaguHttpClient("slow", server.url)

        def running() -> object:
            try:
                status = client.get_dag_run_status("latest")
            except httpx.HTTPStatusError:
                return None
            # The run row exists a moment before its first step starts: wait for both.
            if status.statusLabel != "running" or not status.nodes:
                return None
            return status if status.nodes[0].statusLabel == "running" else None

        status = wait_until(running, timeout=20)
        assert status.finishedAt is None  # type: ignore[attr-defined]
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_pydagu_write_calls_get_a_clear_405(server: LiveServer) -> None:
    client = pydagu_http.DaguHttpClient("pyd", server.url)
    dag = client.get_dag_spec()
    for call in (
        lambda: client.post_dag(dag),
        lambda: client.update_dag(dag),
        client.delete_dag,
    ):
        with pytest.raises(httpx.HTTPStatusError) as info:
            call()
        assert info.value.response.status_code == 405
        assert info.value.response.json()["code"] == "method_not_allowed"
        assert info.value.response.headers["allow"] == "GET, HEAD"
