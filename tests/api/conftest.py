"""Fixtures of the API tests: a DAGU_HOME with DAG files, a real SQLite store with recorded
runs, steps and log files, and the falcon app built on them by `create_app`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest

from api.app import create_app
from controller.catalog import Catalog
from controller.store.records import RunRecord
from controller.store.store import Store
from model.config import Settings, load_settings
from model.status import RunStatus, StepStatus

HELLO = """\
description: says hello
tags: [demo, Greeting]
schedule: "0 3 * * *"
params: NAME=world
env:
  - GREETING: hello
  - API_TOKEN: tok-in-env-123
steps:
  - name: greet
    command: echo ${GREETING} ${NAME}
  - name: second step
    command: echo done
handlerOn:
  exit:
    command: echo bye
"""

OTHER = """\
schedule: "*/5 * * * *"
tags: ops
steps:
  - command: "true"
"""

BROKEN = "steps: [\n"

NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15T08:00:00Z)


@dataclass
class Home:
    """A populated DAGU_HOME."""

    root: Path
    settings: Settings
    store: Store  # read-write, for the test to record rows

    def record_run(
        self,
        dag: str,
        run_id: str,
        status: RunStatus,
        *,
        created: float,
        steps: list[dict[str, Any]] | None = None,
        log_text: str | None = None,
        **fields: Any,
    ) -> RunRecord:
        """A run with steps; log files under settings.log_dir when `log_text` is given."""
        run = self.store.record_run(
            dag_name=dag,
            run_id=run_id,
            status=RunStatus.RUNNING,
            now=created,
            spec_yaml=HELLO if dag == "hello" else "",
        )
        run_dir = self.settings.log_dir / dag / run_id
        updates: dict[str, Any] = {"started_at": created + 1, **fields}
        if log_text is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "run.log").write_text(log_text)
            updates["log_file"] = str(run_dir / "run.log")
        if status.is_final():
            updates.setdefault("finished_at", created + 3)
        updates["status"] = status
        self.store.update_run(run.id, **updates)
        rows = []
        for i, s in enumerate(steps or []):
            row = {"position": i, "kind": "step", **s}
            if "stdout_text" in row:
                run_dir.mkdir(parents=True, exist_ok=True)
                out = run_dir / f"{i}.out"
                out.write_text(row.pop("stdout_text"))
                row["stdout"] = str(out)
            rows.append(row)
        if rows:
            self.store.record_steps(run.id, rows)
        return self.store.get_run(dag, run_id)


def make_home(tmp_path: Path, **env: str) -> Home:
    root = tmp_path / "home"
    (root / "dags").mkdir(parents=True)
    (root / "dags" / "hello.yaml").write_text(HELLO)
    (root / "dags" / "other.yaml").write_text(OTHER)
    (root / "dags" / "broken.yaml").write_text(BROKEN)
    settings = load_settings(env={"DAGU_HOME": str(root), "HOME": str(tmp_path), **env})
    store = Store(settings.db_path)
    return Home(root, settings, store)


def make_client(home: Home, **kwargs: Any) -> falcon.testing.TestClient:
    app = create_app(
        settings=home.settings,
        store_factory=lambda: Store(home.settings.db_path, readonly=True),
        catalog=Catalog(home.settings.dags_dir, home.settings.base_config),
        started_at=NOW - 42,
        clock=lambda: NOW,
        **kwargs,
    )
    return falcon.testing.TestClient(app)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A home with hello/other/broken DAGs and runs of hello."""
    h = make_home(tmp_path)
    midnight = NOW - 8 * 3600
    h.record_run("hello", "run-old", RunStatus.FAILED, created=midnight - 3600)
    h.record_run(
        "hello",
        "run-1",
        RunStatus.SUCCEEDED,
        created=midnight + 60,
        log_text="".join(f"log line {i}\n" for i in range(1, 21)),
        steps=[
            {
                "name": "greet",
                "status": StepStatus.SUCCEEDED,
                "exit_code": 0,
                "stdout_text": "hello world\nsecond\n",
                "spec": {"command": "echo"},
            },
            {
                "name": "second step",
                "status": StepStatus.SUCCEEDED,
                "exit_code": 0,
                "outputs": {"RESULT": "42"},
            },
        ],
    )
    h.record_run(
        "hello",
        "run-2",
        RunStatus.RUNNING,
        created=midnight + 120,
        steps=[{"name": "greet", "status": StepStatus.RUNNING}],
    )
    return h


@pytest.fixture
def client(home: Home) -> falcon.testing.TestClient:
    """A TestClient of the app on `home`, without auth."""
    return make_client(home)


ClientFactory = Callable[..., falcon.testing.TestClient]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (waitress needs a concrete one)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A `dagloop server` subprocess on 127.0.0.1."""

    url: str  # http://127.0.0.1:PORT/api/v2
    port: int
    home: Home
    proc: Any


def start_server(home: Home, env_extra: dict[str, str] | None = None) -> LiveServer:
    """Start `python -m controller server` on a free port and wait for /health."""
    import subprocess
    import sys
    import urllib.request

    from tests.helpers import dagu_home, wait_until

    env = dagu_home(home.root.parent)
    env.update({"DAGU_HOME": str(home.root), "DAGU_HOST": "127.0.0.1"})
    env.update(env_extra or {})
    for _attempt in range(3):
        port = free_port()
        env["DAGU_PORT"] = str(port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "server"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}/api/v2"

        def healthy(proc: Any = proc, url: str = url) -> bool:
            if proc.poll() is not None:
                return True
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(healthy, timeout=20)
        if proc.poll() is None:
            return LiveServer(url, port, home, proc)
        proc.stderr.close() if proc.stderr else None  # port taken in between: try again
    raise RuntimeError("dagloop server did not start")


def stop_server(server: LiveServer) -> None:
    """SIGTERM, then wait; kill if it does not stop."""
    import subprocess

    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
    if server.proc.stderr:
        server.proc.stderr.close()


@pytest.fixture
def live(home: Home) -> Any:
    """`dagloop server` serving `home` (no auth)."""
    server = start_server(home)
    try:
        yield server
    finally:
        stop_server(server)
