"""A DAG's `secrets:` end to end: `dagloop start` as a real process reads a secret from a real
file and one from a real OS variable; the step gets both in its environment, and neither value
is left in any file under DAGU_HOME, in `dagloop status --json`, in the API's run details and
logs, nor in the alert mail (with its log attachments) a real SMTP server received.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import api_client, run_cli
from tests.integration.test_mail import SmtpServer, start_smtp  # noqa: F401 (a fixture)

FILE_SECRET = "db-pass-from-file-7f3a"
ENV_SECRET = "api-token-from-env-91c2"

DAG = """\
logOutput: {log_output}
secrets:
  - name: DB_PASS
    provider: file
    key: db.secret
  - name: API_TOKEN
    provider: env
    key: SRC_TOKEN
smtp:
  host: 127.0.0.1
  port: {port}
errorMail:
  from: dagloop@example.com
  to: ops@example.com
  prefix: "[ERROR]"
  attachLogs: true
mailOn:
  failure: true
steps:
  - name: leak
    env:
      - WRAPPED: "db=${{DB_PASS}}"
    command: >-
      sh -c 'echo "$API_TOKEN $WRAPPED"; echo "err $DB_PASS" >&2;
      printf "%s|%s" "$API_TOKEN" "$DB_PASS" | sha256sum | cut -c1-64 > "$DAG_HASH_FILE"'
    output: LEAKED
  - name: split
    # the value in two writes of two processes: the pump may read it in two chunks
    command: sh -c 'printf %s "$API_TOKEN" | head -c 7; printf %s "$API_TOKEN" | tail -c +8'
    stdout: {copy}  # the step's `stdout:` copy is masked like its log
  - name: inprocess
    # an in-process executor writes its log itself, not through a pipe
    executor: jq
    command: .t
    script: '{{"t": "${{API_TOKEN}}"}}'
    output: JQ_OUT
  - name: fail
    command: sh -c 'echo "still $API_TOKEN"; exit 3'
"""


def _secrets_in(text: str) -> list[str]:
    return [s for s in (FILE_SECRET, ENV_SECRET) if s in text]


def _files_with_secrets(root: Path) -> list[str]:
    """Every file under `root` (the SQLite database and caches included) holding a value."""
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            data = (Path(dirpath) / name).read_bytes()
            if any(s.encode() in data for s in (FILE_SECRET, ENV_SECRET)):
                found.append(str(Path(dirpath) / name))
    return found


# merged: both streams in one `.log`, masked as the separate files are (docs/compatibility.md)
@pytest.mark.parametrize("log_output", ["separate", "merged"])
def test_secrets_reach_the_step_and_nothing_else(
    start_smtp: Callable[..., SmtpServer],  # noqa: F811
    tmp_path: Path,
    log_output: str,
) -> None:
    srv = start_smtp()
    home, dag_dir = tmp_path / "home", tmp_path / "dags"
    dag_dir.mkdir()
    (dag_dir / "db.secret").write_text(FILE_SECRET)
    dag_file = dag_dir / "leaky.yaml"
    copy = tmp_path / "copies" / "split.out"  # outside DAGU_HOME
    copy.parent.mkdir()
    dag_file.write_text(DAG.format(port=srv.port, copy=copy, log_output=log_output))
    hash_file = tmp_path / "seen.sha256"  # outside DAGU_HOME
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DAGU_HOME": str(home),
        "SRC_TOKEN": ENV_SECRET,
        "DAG_HASH_FILE": str(hash_file),
    }

    code, out, err = run_cli("start", str(dag_file), env=env, timeout=60)

    assert code == 1, err  # the `fail` step fails the run, which sends the error mail
    # the step saw both values in its environment
    expected = hashlib.sha256(f"{ENV_SECRET}|{FILE_SECRET}".encode()).hexdigest()
    assert hash_file.read_text().strip() == expected
    assert _secrets_in(out + err) == []
    assert _files_with_secrets(home) == []
    suffixes = {p.suffix for p in (home / "logs" / "leaky").rglob("leak.*")}
    assert suffixes == ({".log"} if log_output == "merged" else {".out", ".err"})
    assert _secrets_in(copy.read_text()) == []
    assert "*******" in copy.read_text()
    code, status_json, err = run_cli("status", "leaky", "--json", env=env)
    assert code == 0, err
    assert _secrets_in(status_json) == []
    details = json.loads(status_json)
    assert "*******" in json.dumps(details)  # the output is there, masked as Dagu masks it
    _assert_api_masks(home, details["dagRunId"])
    _assert_mail_masks(srv)


def _assert_api_masks(home: Path, run_id: str) -> None:
    """The run's details, outputs, run log and step logs through the API."""
    client = api_client(home)
    base = f"/api/v2/dag-runs/leaky/{run_id}"
    for path in (base, f"{base}/outputs", f"{base}/log", f"{base}/steps/leak/log"):
        resp = client.simulate_get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert _secrets_in(resp.text) == [], path
    assert "*******" in client.simulate_get(f"{base}/steps/leak/log").text


def _assert_mail_masks(srv: SmtpServer) -> None:
    """The error mail arrived, its body and its attached logs masked."""
    msg = srv.inbox.only()
    body = msg.get_body(preferencelist=("plain", "html"))
    assert body is not None
    assert _secrets_in(str(body.get_content())) == []
    attachments = list(msg.iter_attachments())
    assert attachments
    for part in attachments:
        content = part.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        assert _secrets_in(text) == [], part.get_filename()
    assert _secrets_in(msg.as_string()) == []


def test_a_missing_secret_file_fails_the_run_before_any_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dag_file = tmp_path / "nofile.yaml"
    marker = tmp_path / "ran"
    dag_file.write_text(
        "secrets:\n  - {name: DB_PASS, provider: file, key: missing.secret}\n"
        f"steps:\n  - name: never\n    command: touch {marker}\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGU_HOME": str(home)}

    code, _, err = run_cli("start", str(dag_file), env=env, timeout=60)

    assert code == 1
    assert 'failed to resolve secret "DB_PASS" from provider "file"' in err
    assert not marker.exists()
    code, status_json, _ = run_cli("status", "nofile", "--json", env=env)
    details = json.loads(status_json)
    assert details["status"] == 2  # failed
    assert [n["status"] for n in details["nodes"]] == [0]  # not_started


SUB_DAG = """\
secrets:
  - name: API_TOKEN
    provider: env
    key: SRC_TOKEN
steps:
  - name: fan
    call: middle
    parallel: [a, b]
    params: "TOK=${API_TOKEN} WHICH=${ITEM}"
---
name: middle
params:
  - TOK: none
  - WHICH: none
steps:
  - name: show
    command: sh -c 'echo "middle $TOK"; echo "err $TOK" >&2'
    output: SEEN
  - name: deeper
    call: leaf
    params: "INNER=${TOK}"
---
name: leaf
params:
  - INNER: none
steps:
  - name: leaf_show
    command: >-
      sh -c 'echo "leaf $INNER";
      printf %s "$INNER" | sha256sum | cut -c1-64 > "$DAG_HASH_FILE.$$"'
"""


def test_a_secret_passed_to_sub_dags_is_masked_in_their_records_too(tmp_path: Path) -> None:
    """Dagu 1.30.2 masks a parent's secret only in the parent's view of its children (their
    logs and outputs.json keep it); dagloop hands the parent's secret values to every sub-DAG
    run, at any depth, through a pipe, so no file of theirs holds one either."""
    home, dag_dir = tmp_path / "home", tmp_path / "dags"
    dag_dir.mkdir()
    dag_file = dag_dir / "fanout.yaml"
    dag_file.write_text(SUB_DAG)
    hash_base = tmp_path / "leaf.sha256"  # outside DAGU_HOME
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DAGU_HOME": str(home),
        "SRC_TOKEN": ENV_SECRET,
        "DAG_HASH_FILE": str(hash_base),
    }

    code, out, err = run_cli("start", str(dag_file), env=env, timeout=60)

    assert code == 0, err
    seen = [p.read_text().strip() for p in tmp_path.glob("leaf.sha256.*")]
    assert seen == [hashlib.sha256(ENV_SECRET.encode()).hexdigest()] * 2  # the real value
    assert _secrets_in(out + err) == []
    assert _files_with_secrets(home) == []
    leaf_logs = list((home / "logs" / "leaf").rglob("leaf_show.out"))
    assert len(leaf_logs) == 2
    assert all(p.read_text().strip() == "leaf *******" for p in leaf_logs)
