"""`logOutput: merged` end to end, `dagloop start` as a real process: the log files, the run's
records (`status --json`), the API's step log routes, and the error and summary of a failed
merged step, as Dagu 1.30.2 was seen to do them (docs/compatibility.md, "`logOutput:
merged`"; the normalised compat cases `log_output_*` cover what the steps themselves see).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import api_client, dagu_home, run_cli

DAG = """\
logOutput: merged
steps:
  - name: both
    command: bash -c 'echo out1; echo err1 >&2; echo out2'
    output: CAPTURED
  - name: apart
    logOutput: separate
    command: bash -c 'echo a-out; echo a-err >&2'
  - name: broken
    command: bash -c 'echo before; echo oops >&2; echo after; exit 3'
    retryPolicy:
      limit: 1
      intervalSec: 0
handlerOn:
  exit:
    command: bash -c 'echo bye; echo bye-err >&2'
"""


def _run(tmp_path: Path) -> tuple[dict[str, str], str, dict[str, Any]]:
    """Start the DAG; (environment, what `start` printed, the run's `status --json`)."""
    env = dagu_home(tmp_path)
    (Path(env["DAGU_HOME"]) / "dags" / "mixed.yaml").write_text(DAG)
    code, out, err = run_cli("start", "--progress", "never", "--no-color", "mixed", env=env)
    assert code == 1, err  # `broken` fails the run
    code, status_json, err = run_cli("status", "mixed", "--json", env=env)
    assert code == 0, err
    return env, out, json.loads(status_json)


def _nodes(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["step"]["name"]: n for n in [*details["nodes"], details["onExit"]]}


def test_merged_steps_write_one_log_recorded_as_both_stdout_and_stderr(tmp_path: Path) -> None:
    _, _, details = _run(tmp_path)

    nodes = _nodes(details)
    run_dir = Path(nodes["both"]["stdout"]).parent
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "apart.err",
        "apart.out",
        "both.log",
        "broken.log",
        "onExit.log",
        "run.log",
    ]
    for name in ("both", "broken", "onExit"):  # the handler inherits the DAG's logOutput
        assert nodes[name]["stdout"] == nodes[name]["stderr"] == str(run_dir / f"{name}.log")
        assert "logOutput" not in nodes[name]["step"]  # recorded only when the step sets it
    assert (nodes["apart"]["stdout"], nodes["apart"]["stderr"]) == (
        str(run_dir / "apart.out"),
        str(run_dir / "apart.err"),
    )
    assert nodes["apart"]["step"]["logOutput"] == "separate"
    # both streams in the one file (their order between the two pipes is not kept, as in
    # Dagu); a retry appends to it; `output:` still captures stdout only
    assert sorted((run_dir / "both.log").read_text().splitlines()) == ["err1", "out1", "out2"]
    assert sorted((run_dir / "broken.log").read_text().splitlines()) == sorted(
        ["before", "oops", "after"] * 2
    )
    assert (run_dir / "apart.out").read_text() == "a-out\n"
    assert (run_dir / "apart.err").read_text() == "a-err\n"
    assert nodes["both"]["outputVariables"] == ["CAPTURED=out1\nout2"]


def test_a_failed_merged_step_quotes_its_stderr_alone(tmp_path: Path) -> None:
    _, out, details = _run(tmp_path)

    # Dagu 1.30.2: `recent stderr (tail)` of the failed execution, without the stdout lines
    # that share the .log file, and without the earlier execution's stderr
    error = _nodes(details)["broken"]["error"]
    assert error == 'failed to execute step "broken": exit status 3\nrecent stderr (tail):\noops\n'
    lines = out.splitlines()
    at = lines.index("      stderr, last line:")
    assert lines[at + 1].strip() == "oops"
    assert lines[at + 2].strip().startswith("stdout log: ")
    assert lines[at + 2].endswith("broken.log") and lines[at + 3].endswith("broken.log")


def test_the_api_serves_the_merged_log_as_either_stream(tmp_path: Path) -> None:
    env, _, details = _run(tmp_path)
    home = Path(env["DAGU_HOME"])
    client = api_client(home)
    base = f"/api/v2/dag-runs/mixed/{details['dagRunId']}/steps"

    pages = {
        (step, stream): client.simulate_get(f"{base}/{step}/log", params={"stream": stream})
        for step in ("both", "apart")
        for stream in ("stdout", "stderr")
    }

    assert {key: resp.status_code for key, resp in pages.items()} == dict.fromkeys(pages, 200)
    assert pages["both", "stdout"].json == pages["both", "stderr"].json
    assert sorted(pages["both", "stderr"].json["content"].splitlines()) == ["err1", "out1", "out2"]
    assert pages["apart", "stdout"].json["content"].strip() == "a-out"
    assert pages["apart", "stderr"].json["content"].strip() == "a-err"
