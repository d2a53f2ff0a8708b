"""The README's opening commands, tried as a newcomer would.

The first block installs into `.venv` and runs `dagloop start-all` on `examples/`: `.ci/run`
performs the install part on a fresh machine, and this test runs the `dagloop start-all`
part exactly as written (its environment assignments and arguments), on a free port, and
checks the controller and the API come up with the example DAGs. The second block must be
the test command `.ci/run` runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.helpers import REPO_ROOT, wait_until

README = REPO_ROOT / "README.md"


def bash_blocks() -> list[str]:
    """The fenced ```bash blocks of the README, in order."""
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_second_command_is_the_test_command_ci_runs() -> None:
    command = bash_blocks()[1].strip()
    pytest_part = command.split("&&")[-1].strip()
    assert pytest_part.startswith("python -m pytest")
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert pytest_part in ci.splitlines()


def test_first_command_runs_start_all_on_the_examples(tmp_path: Path) -> None:
    command = bash_blocks()[0].strip()
    install, _, run = command.rpartition("&&")
    assert "pip install -e '.[test]'" in install
    words = shlex.split(run.replace('"$PWD', f'"{tmp_path}'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words == ["dagloop", "start-all"]
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    port = free_port()
    env.update(DAGU_PORT=str(port), DAGU_HOST="127.0.0.1")
    proc = subprocess.Popen(
        words, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def get(path: str) -> dict[str, object] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return json.loads(r.read())  # type: ignore[no-any-return]
            except OSError:
                return None

        health = wait_until(lambda: get("/api/v2/health"), 30)
        assert health["status"] == "healthy"  # type: ignore[index]
        dags = get("/api/v2/dags?perPage=100")
        assert dags is not None
        names = {d["fileName"] for d in dags["dags"]}  # type: ignore[attr-defined]
        expected = {p.stem for p in (REPO_ROOT / "examples").glob("*.yaml")} - {"base"}
        assert names == expected
        assert all(not d["errors"] for d in dags["dags"])  # type: ignore[attr-defined]
        wait_until(lambda: (get("/api/v2/services/scheduler") or {}).get("schedulers"), 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert (tmp_path / ".dagloop" / "data" / "dagloop.db").is_file()
