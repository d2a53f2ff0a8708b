"""`dagloop start` with `DAGU_LOG_FORMAT=json`: its log events on stderr, one JSON object a
line (as `dagu start`), and the run's own `run.log` in the same format; progress stays on
stdout. Every line is parsed; each carries time, level, msg, dag and run_id, and step where
there is one, with the facts in fields.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.helpers import dagu_home, run_cli

RETRIED = """\
steps:
  - name: greet
    command: echo hello
  - name: flaky
    depends: greet
    command: sh -c 'exit 3'
    retryPolicy:
      limit: 1
      intervalSec: 0
"""


def _events(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object with the fields each event must have."""
    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"]), event
        assert event["level"] in ("DEBUG", "INFO", "WARNING", "ERROR"), event
        assert {"msg", "dag", "run_id"} <= event.keys(), event
    return events


def _json_env(tmp_path: Path) -> dict[str, str]:
    return {**dagu_home(tmp_path), "DAGU_LOG_FORMAT": "json"}


def test_start_writes_run_and_step_events_to_stderr_and_run_log_as_json(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    (Path(env["DAGU_HOME"]) / "dags" / "retried.yaml").write_text(RETRIED)

    code, out, err = run_cli("start", "retried", env=env)

    assert code == 1
    events = _events(err)
    run_id = events[0]["run_id"]
    assert {(e["dag"], e["run_id"]) for e in events} == {("retried", run_id)}
    assert [(e["msg"], e.get("step")) for e in events] == [
        ("run started", None),
        ("step started", "greet"),
        ("step finished", "greet"),
        ("step started", "flaky"),
        ("step failed; retrying", "flaky"),
        ("step failed", "flaky"),
        ("run finished", None),
    ]
    retrying, failed, finished = events[4], events[5], events[6]
    assert (retrying["retry"], retrying["exit_code"]) == (1, 3)
    assert (failed["level"], failed["exit_code"], failed["status"]) == ("ERROR", 3, "failed")
    assert (finished["level"], finished["status"]) == ("ERROR", "failed")
    assert "exit status 3" in finished["error"] and "3" not in finished["msg"]
    # progress for humans stays on stdout, never as JSON
    assert "flaky" in out and not any(line.startswith("{") for line in out.splitlines())
    run_log = next((Path(env["DAGU_HOME"]) / "logs" / "retried").rglob("run.log"))
    assert [(e["msg"], e.get("step")) for e in _events(run_log.read_text())] == [
        (e["msg"], e.get("step")) for e in events
    ]


def test_invalid_dag_is_one_error_event_with_the_problems_in_fields(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    path = Path(env["DAGU_HOME"]) / "dags" / "broken.yaml"
    path.write_text("steps:\n  - name: a\n    commnd: echo\n")

    code, out, err = run_cli("start", "broken", env=env)

    assert (code, out) == (1, "")
    [event] = _events(err)
    assert (event["level"], event["msg"], event["dag"]) == ("ERROR", "run not started", "broken")
    assert str(path) not in event["msg"]
    assert event["file"] == str(path)
    problem = {"file": str(path), "line": 3, "field": "steps[0].commnd"}
    assert event["errors"] == [{**problem, "message": "unknown key 'commnd'"}]


def test_refused_run_id_is_an_error_event(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    (Path(env["DAGU_HOME"]) / "dags" / "ok.yaml").write_text("steps:\n  - command: 'true'\n")

    code, _, err = run_cli("start", "--run-id", "no spaces", "ok", env=env)

    assert code == 1
    [event] = _events(err)
    assert (event["msg"], event["dag"], event["run_id"]) == ("run not started", "ok", "no spaces")
    assert "invalid run id" in event["error"]


def test_text_format_keeps_a_text_run_log_and_a_quiet_stderr(tmp_path: Path) -> None:
    env = dagu_home(tmp_path)
    (Path(env["DAGU_HOME"]) / "dags" / "ok.yaml").write_text("steps:\n  - command: 'true'\n")

    code, _, err = run_cli("start", "ok", env=env)

    assert (code, err) == (0, "")
    run_log = next((Path(env["DAGU_HOME"]) / "logs" / "ok").rglob("run.log")).read_text()
    lines = run_log.splitlines()
    assert len(lines) == 4 and not any(line.startswith("{") for line in lines)
    assert re.fullmatch(r"\S+Z INFO run started dag=ok run_id=\S+ attempt=1 pid=\d+", lines[0])


def test_unparseable_dotenv_adds_a_run_note_and_a_warning(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / "bad.env").write_text('GOOD=1\nBROKEN="never closed\n')
    (dags / "dot.yaml").write_text("dotenv: bad.env\nsteps:\n  - command: echo $GOOD\n")

    code, out, err = run_cli("start", "--json", "dot", env=env, cwd=dags)

    assert code == 0  # the run goes on without the file, as Dagu's
    details = json.loads(out.splitlines()[-1])
    path = str(dags / "bad.env")
    assert details["notes"] == [f"dotenv file {path} skipped: line 2: unterminated double quote"]
    [warning] = [e for e in _events(err) if e["level"] == "WARNING"]
    assert (warning["msg"], warning["file"]) == ("dotenv file skipped", path)
    assert warning["error"] == "line 2: unterminated double quote"


def test_a_step_timeout_logs_the_signal_sent_to_the_step(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    dag = "steps:\n  - name: slow\n    command: sleep 30\n    timeoutSec: 1\n"
    (Path(env["DAGU_HOME"]) / "dags" / "slow.yaml").write_text(dag)

    code, _, err = run_cli("start", "slow", env=env)

    assert code == 1
    [sent] = [e for e in _events(err) if e["msg"] == "signal sent to step"]
    assert (sent["step"], sent["signal"]) == ("slow", "SIGTERM")
    assert isinstance(sent["pgid"], int)


def test_retry_writes_its_events_to_stderr_too(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    (Path(env["DAGU_HOME"]) / "dags" / "retried.yaml").write_text(RETRIED)
    code, _, err = run_cli("start", "retried", env=env)
    run_id = _events(err)[0]["run_id"]

    code, _, err = run_cli("retry", "--run-id", run_id, "retried", env=env)

    assert code == 1
    events = _events(err)
    assert events[0]["msg"] == "run started" and events[0]["attempt"] == 2
    assert {e["run_id"] for e in events} == {run_id}


def test_an_alert_mail_that_fails_is_a_warning_event_and_a_run_note(tmp_path: Path) -> None:
    env = _json_env(tmp_path)
    dag = (
        "mailOn:\n  failure: true\nerrorMail:\n  from: a@example.com\n  to: b@example.com\n"
        "steps:\n  - command: 'false'\n"
    )
    (Path(env["DAGU_HOME"]) / "dags" / "alerting.yaml").write_text(dag)

    code, out, err = run_cli("start", "--json", "alerting", env=env)

    assert code == 1
    note = "error mail to b@example.com not sent: no SMTP server configured (smtp.host)"
    assert json.loads(out.splitlines()[-1])["notes"] == [note]
    [warning] = [e for e in _events(err) if e["msg"] == "alert mail not sent"]
    assert (warning["level"], warning["error"]) == ("WARNING", note)


def test_a_dag_secret_in_a_step_error_never_reaches_a_log_line(tmp_path: Path) -> None:
    secret = "api-token-json-log-5e1d"
    env = {**_json_env(tmp_path), "SRC_TOKEN": secret}
    dag = (
        "secrets:\n  - name: API_TOKEN\n    provider: env\n    key: SRC_TOKEN\n"
        "steps:\n  - name: leak\n    command: sh -c 'echo \"token $API_TOKEN\" >&2; exit 2'\n"
    )
    (Path(env["DAGU_HOME"]) / "dags" / "leaky.yaml").write_text(dag)

    code, _, err = run_cli("start", "leaky", env=env)

    assert code == 1
    [failed] = [e for e in _events(err) if e["msg"] == "step failed"]
    assert "recent stderr" in failed["error"]  # the tail is quoted, the value masked
    run_log = next((Path(env["DAGU_HOME"]) / "logs" / "leaky").rglob("run.log")).read_text()
    assert secret not in err and secret not in run_log
