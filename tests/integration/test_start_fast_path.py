"""`dagloop start` of a cached DAG: no pydantic on the path, same results as the first run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import dagu_home, run_cli

RICH = """\
params: "A=1 B"
env:
  - GREETING: hello
handlerOn:
  success:
    command: echo "done $DAG_RUN_STATUS"
  exit:
    command: "true"
steps:
  - name: first
    command: echo "${GREETING} ${A}"
    output: FIRST
  - name: retried
    command: sh -c 'test -f marker || { touch marker; exit 3; }'
    retryPolicy:
      limit: 2
      intervalSec: 0
  - name: skipped
    command: "false"
    preconditions:
      - condition: "${A}"
        expected: "2"
  - name: last
    depends: [first, retried]
    command: echo "$FIRST"
    output: LAST
"""


def _shape(details: dict[str, object]) -> object:
    nodes = details["nodes"]
    assert isinstance(nodes, list)
    return (
        details["statusLabel"],
        details["params"],
        details["outputs"],
        [(n["step"]["name"], n["statusLabel"], n["exitCode"], n["retryCount"]) for n in nodes],
        sorted(k for k in details if k.startswith("on")),
    )


def test_second_start_imports_no_pydantic_and_gives_the_same_run(tmp_path: Path) -> None:
    env = dagu_home(tmp_path)
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / "rich.yaml").write_text(RICH)
    results = []
    for _ in range(2):
        (dags / "marker").unlink(missing_ok=True)
        code, out, _ = run_cli("start", "--json", "-q", "rich", env=env, cwd=dags)
        results.append((code, json.loads(out.strip().splitlines()[-1])))
    assert results[0][0] == results[1][0] == 0
    assert _shape(results[0][1]) == _shape(results[1][1])
    assert results[1][1]["outputs"]["last"] == "hello 1"

    (dags / "marker").unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "controller", "start", "-q", "rich"],
        env=env,
        cwd=dags,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The import trace is there (at whatever depth the runner is imported).
    assert re.search(r"^import time: .*\| +controller\.engine\.runner$", proc.stderr, re.M)
    assert "pydantic" not in proc.stderr and "yaml" not in proc.stderr


def test_params_on_the_command_line_still_work_on_the_fast_path(tmp_path: Path) -> None:
    env = dagu_home(tmp_path)
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / "p.yaml").write_text('params: "X=a"\nsteps:\n  - command: echo "$X"\n    output: O\n')
    for value in ("b", "c"):
        code, out, _ = run_cli("start", "--json", "-q", "p", "--", f"X={value}", env=env)
        assert code == 0
        assert json.loads(out.strip().splitlines()[-1])["outputs"]["o"] == value


def test_edited_dag_runs_the_new_version(tmp_path: Path) -> None:
    env = dagu_home(tmp_path)
    dags = Path(env["DAGU_HOME"]) / "dags"
    for word in ("old", "new"):
        (dags / "e.yaml").write_text(f"steps:\n  - command: echo {word}\n    output: W\n")
        code, out, _ = run_cli("start", "--json", "-q", "e", env=env)
        assert code == 0
        assert json.loads(out.strip().splitlines()[-1])["outputs"]["w"] == word
