"""The controller's own log lines, as journald and log shippers see them on stderr.

A real `dagloop scheduler` with `DAGU_LOG_FORMAT=json` runs a real DAG; every stderr line
must be one JSON object with `time` (RFC 3339 UTC), `level` and `msg`, run events carry
`dag` and `run_id`, and the controller's own credentials never appear.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

from controller.store.store import Store
from model.status import RunStatus
from tests.helpers import run_cli, wait_until

CANARY_TOKEN = "canary-token-7f3a9c21"
CANARY_PASSWORD = "canary-password-5b8e"


def test_json_log_lines_carry_time_level_msg_dag_run_id_and_no_secret(
    dagu_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **dagu_env,
        "DAGU_LOG_FORMAT": "json",
        "DAGU_AUTH_TOKEN": CANARY_TOKEN,
        "DAGU_AUTH_BASIC_USERNAME": "admin",
        "DAGU_AUTH_BASIC_PASSWORD": CANARY_PASSWORD,
    }
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / "hello.yaml").write_text('steps:\n  - command: echo "token is $DAGU_AUTH_TOKEN"\n')
    (dags / "broken.yaml").write_text("steps:\n  - commnd: echo\n")
    err_path = tmp_path / "scheduler.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "scheduler"], env=env, stderr=err
        )
    try:
        code, out, stderr = run_cli("enqueue", "hello", env=env)
        assert code == 0, stderr
        run_id = out.strip()
        db = Path(env["DAGU_HOME"]) / "data" / "dagloop.db"

        def finished() -> bool:
            with Store(db) as store:
                return store.get_run("hello", run_id).status == RunStatus.SUCCEEDED

        wait_until(finished, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = err_path.read_text().splitlines()
    assert lines, "the controller logged nothing"
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    for event in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"]), event
        assert event["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert isinstance(event["msg"], str) and event["msg"]
        assert {"dag", "run_id"} <= event.keys(), event  # null when the line is about no run
    assert any(e.get("dag") == "hello" and e.get("run_id") == run_id for e in events)
    # facts in fields: no message repeats the run's id or the reason it was started for
    for event in events:
        assert run_id not in event["msg"] and "enqueue" not in event["msg"], event
    # facts in fields: the invalid file's path and problems are not pasted into `msg`
    [invalid] = [e for e in events if e.get("dag") == "broken"]
    assert (invalid["msg"], invalid["file"]) == ("invalid DAG file", str(dags / "broken.yaml"))
    assert invalid["errors"] == [f"{dags / 'broken.yaml'}:2: steps[0].commnd: unknown key 'commnd'"]
    # the run's own log, written by the runner the controller started, follows the format too
    run_log = next((Path(env["DAGU_HOME"]) / "logs" / "hello").rglob("run.log")).read_text()
    run_events = [json.loads(line) for line in run_log.splitlines()]
    assert [e["msg"] for e in run_events] == [
        "run started",
        "step started",
        "step finished",
        "run finished",
    ]
    assert all((e["dag"], e["run_id"]) == ("hello", run_id) for e in run_events)
    text = err_path.read_text()
    assert CANARY_TOKEN not in text and CANARY_PASSWORD not in text
    # The step's environment never had the controller's token (seed: credentials filtered).
    step_out = next((Path(env["DAGU_HOME"]) / "logs").rglob("*.out")).read_text()
    assert step_out.strip() == "token is"
