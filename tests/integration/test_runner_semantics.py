"""The run engine against real processes: graph, outcomes, shell, outputs, control flow.

Each test writes a DAG into an isolated DAGU_HOME, runs `python -m controller start --json`
as a real subprocess and asserts on the run details document and the exit code.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(60)


def run_dag(env: dict[str, str], text: str, *params: str, name: str = "t") -> tuple[int, Any]:
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / f"{name}.yaml").write_text(textwrap.dedent(text))
    args = ["start", "--json", "-q", name]
    if params:
        args += ["--", *params]
    code, out, err = run_cli(*args, env=env)
    assert out.strip(), err
    return code, json.loads(out.strip().splitlines()[-1])


def nodes(doc: Any) -> dict[str, Any]:
    return {n["step"]["name"]: n for n in doc["nodes"]}


def labels(doc: Any) -> dict[str, str]:
    return {k: v["statusLabel"] for k, v in nodes(doc).items()}


def test_chain_passes_outputs_and_params(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        params: NAME=world
        env:
          - A: one
          - B: ${A}-two
        steps:
          - name: a
            command: echo ${B} ${NAME}
            output: OUT1
          - name: b
            command: echo "[${OUT1}]"
            output:
              name: SECOND
              key: renamed
          - command: echo $1
            output: THIRD
        """,
        "NAME=there",
    )
    assert code == 0
    assert doc["statusLabel"] == "succeeded"
    n = nodes(doc)
    assert n["a"]["outputVariables"] == ["OUT1=one-two there"]
    assert n["b"]["outputVariables"] == ["SECOND=[one-two there]"]
    assert "cmd_3" in n
    assert (
        doc["outputs"]
        == {"out1": "one-two there", "renamed": "[one-two there]", "third": "NAME=there"}
        or doc["outputs"]["out1"] == "one-two there"
    )


def test_upstream_failed_aborts_and_skipped_skips(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        type: graph
        steps:
          - name: bad
            command: exit 3
          - name: after_bad
            command: "true"
            depends: bad
          - name: skip
            command: "true"
            preconditions:
              - condition: "`echo no`"
                expected: "yes"
          - name: after_skip
            command: "true"
            depends: skip
          - name: ok
            command: "true"
        """,
    )
    assert code == 1
    assert doc["statusLabel"] == "failed"
    assert labels(doc) == {
        "bad": "failed",
        "after_bad": "aborted",
        "skip": "skipped",
        "after_skip": "skipped",
        "ok": "succeeded",
    }
    n = nodes(doc)
    assert n["after_bad"]["error"] == "upstream failed"
    assert n["bad"]["exitCode"] == 3


def test_continue_on_failure_gives_partial_success(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: a
            command: sh -c 'echo boom >&2; exit 2'
            continueOn: failed
          - name: b
            command: "true"
        """,
    )
    assert code == 1
    assert doc["statusLabel"] == "partially_succeeded"
    a = nodes(doc)["a"]
    assert a["statusLabel"] == "failed"
    # Dagu's error text (observed on 1.30.2)
    assert a["error"] == 'failed to execute step "a": exit status 2\nrecent stderr (tail):\nboom\n'


def test_mark_success_and_exit_code_continue(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: a
            command: exit 4
            continueOn:
              exitCode: [4]
              markSuccess: true
          - name: b
            command: "true"
        """,
    )
    assert code == 0
    assert doc["statusLabel"] == "succeeded"
    assert nodes(doc)["a"]["statusLabel"] == "succeeded"


def test_retry_policy_counts_and_keeps_last_output(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: a
            command: |
              n=$(cat t.count 2>/dev/null || echo 0); n=$((n+1)); echo $n > t.count
              echo try$n; exit 1
            output: OUT
            retryPolicy:
              limit: 2
              intervalSec: 0
        """,
    )
    assert code == 1
    a = nodes(doc)["a"]
    # Dagu 1.30.2 (retry_output_concat, retry_exhausted): retries count in retryCount only,
    # and the output is the last attempt's stdout
    assert a["retryCount"] == 2
    assert a["doneCount"] == 1
    assert a["outputVariables"] == ["OUT=try3"]


def test_retry_only_listed_exit_codes(dagu_env: dict[str, str]) -> None:
    _code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: a
            command: exit 5
            retryPolicy:
              limit: 3
              intervalSec: 0
              exitCode: [7]
        """,
    )
    assert nodes(doc)["a"]["retryCount"] == 0


def test_step_timeout_is_124_and_not_retried(dagu_env: dict[str, str]) -> None:
    _code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: slow
            command: sleep 30
            timeoutSec: 1
            retryPolicy:
              limit: 3
              intervalSec: 0
        """,
    )
    s = nodes(doc)["slow"]
    assert s["statusLabel"] == "failed"
    assert s["exitCode"] == 124
    assert s["retryCount"] == 0
    assert doc["statusLabel"] == "failed"


def test_dag_timeout_aborts_running_and_fails_run(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        timeoutSec: 1
        steps:
          - name: slow
            command: sleep 30
          - name: next
            command: "true"
        """,
    )
    assert code == 1
    assert doc["statusLabel"] == "failed"
    # Dagu 1.30.2 (dag_timeout): steps the deadline kept from starting are aborted too
    assert labels(doc) == {"slow": "aborted", "next": "aborted"}


def test_dag_precondition_aborts_with_exit_0(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        preconditions:
          - condition: "`echo 1`"
            expected: "re:^[2-9]$"
        steps:
          - name: a
            command: "true"
        """,
    )
    assert code == 0
    assert doc["statusLabel"] == "aborted"
    assert labels(doc) == {"a": "not_started"}


def test_repeat_until_condition(dagu_env: dict[str, str], tmp_path: Path) -> None:
    counter = tmp_path / "n"
    code, doc = run_dag(
        dagu_env,
        f"""
        steps:
          - name: r
            command: echo x >> {counter}
            repeatPolicy:
              repeat: until
              condition: "`wc -l < {counter} | tr -d ' '`"
              expected: "3"
              intervalSec: 0
        """,
    )
    assert code == 0
    assert nodes(doc)["r"]["doneCount"] == 3


def test_repeat_while_exit_code_with_limit(dagu_env: dict[str, str]) -> None:
    _code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: r
            command: exit 1
            repeatPolicy:
              repeat: while
              exitCode: [1]
              limit: 3
              intervalSec: 0
        """,
    )
    r = nodes(doc)["r"]
    assert r["doneCount"] == 3
    assert r["statusLabel"] == "failed"


def test_handlers_run_with_status(dagu_env: dict[str, str], tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    _code, doc = run_dag(
        dagu_env,
        f"""
        handlerOn:
          success:
            command: echo success-$DAG_RUN_STATUS >> {marks}
          failure:
            command: echo failure-$DAG_RUN_STATUS >> {marks}
          exit:
            command: echo exit-$DAG_RUN_STATUS >> {marks}
        steps:
          - name: a
            command: exit 1
        """,
    )
    assert doc["statusLabel"] == "failed"
    assert marks.read_text().split() == ["failure-failed", "exit-failed"]
    assert doc["onExit"]["statusLabel"] == "succeeded"
    assert "onSuccess" not in doc


def test_init_handler_failure_runs_no_step(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        handlerOn:
          init:
            command: exit 1
        steps:
          - name: a
            command: "true"
        """,
    )
    # Dagu 1.30.2 (handlers_init_fail): the run is aborted, exit 1
    assert code == 1
    assert doc["statusLabel"] == "aborted"
    assert labels(doc) == {"a": "not_started"}


def test_output_overflow_fails_step(dagu_env: dict[str, str]) -> None:
    _code, doc = run_dag(
        dagu_env,
        """
        maxOutputSize: 100
        steps:
          - name: big
            command: head -c 1000 /dev/zero | tr '\\0' x
            output: BIG
        """,
    )
    big = nodes(doc)["big"]
    assert big["statusLabel"] == "failed"
    assert "output exceeded maximum size limit" in big["error"]


def test_missing_binary_is_127_and_direct_shell(dagu_env: dict[str, str]) -> None:
    _code, doc = run_dag(
        dagu_env,
        """
        type: graph
        steps:
          - name: missing
            command: no-such-binary-xyz
          - name: direct
            shell: direct
            command: no-such-binary-xyz --flag
          - name: direct_ok
            shell: direct
            command: echo 'a b'
            output: D
        """,
    )
    n = nodes(doc)
    assert n["missing"]["exitCode"] == 127
    assert n["direct"]["exitCode"] == 127
    assert n["direct_ok"]["outputVariables"] == ["D=a b"]


def test_script_with_interpreter_and_working_dir(dagu_env: dict[str, str], tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    _code, doc = run_dag(
        dagu_env,
        f"""
        workingDir: {wd}
        steps:
          - name: py
            command: python3
            script: |
              import os
              print(os.getcwd())
            output: CWD
          - name: sh
            script: |
              echo first
              false
              echo never
            output: S
        """,
    )
    n = nodes(doc)
    assert n["py"]["outputVariables"] == [f"CWD={wd}"]
    assert n["sh"]["statusLabel"] == "failed"
    assert n["sh"]["outputVariables"] == ["S=first"]


def test_env_filtering_and_specials(dagu_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(dagu_env)
    env["MYSECRET"] = "x"
    env["DAGU_AUTH_TOKEN"] = "tok"
    env["DAGU_CUSTOM"] = "keep"
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / ".env").write_text("FROM_DOTENV=dot\n")
    (dags / "e.yaml").write_text(
        textwrap.dedent(
            """
            params: P=v
            steps:
              - name: dump
                command: env
            """
        )
    )
    _code, out, _err = run_cli("start", "--json", "-q", "e", env=env)
    doc = json.loads(out.strip().splitlines()[-1])
    dump = Path(doc["nodes"][0]["stdout"]).read_text()
    names = {
        line.split("=", 1)[0]: line.split("=", 1)[1] for line in dump.splitlines() if "=" in line
    }
    assert "MYSECRET" not in names
    assert "DAGU_AUTH_TOKEN" not in names
    assert names["DAGU_CUSTOM"] == "keep"
    assert names["FROM_DOTENV"] == "dot"
    assert names["P"] == "v"
    assert json.loads(names["DAGU_PARAMS_JSON"]) == {"P": "v"}
    assert names["DAG_NAME"] == "e"
    assert names["DAG_RUN_ID"] == doc["dagRunId"]
    assert names["DAG_RUN_STEP_NAME"] == "dump"
    assert names["DAG_RUN_STEP_STDOUT_FILE"] == doc["nodes"][0]["stdout"]


def test_parallel_group_and_max_active_steps(dagu_env: dict[str, str], tmp_path: Path) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        maxActiveSteps: 2
        steps:
          - name: first
            command: "true"
          - - name: p1
              command: sleep 0.3
            - name: p2
              command: sleep 0.3
            - name: p3
              command: sleep 0.3
          - name: last
            command: "true"
        """,
    )
    assert code == 0
    n = nodes(doc)
    assert n["last"]["step"]["depends"] == ["p1", "p2", "p3"]


def test_call_local_sub_dag_and_parallel(dagu_env: dict[str, str]) -> None:
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: one
            call: child
            params: "X=hello"
            output: RES
          - name: many
            call: child
            parallel:
              items: [a, b, c]
            params: "X=${ITEM}"
        ---
        name: child
        params: X=none
        steps:
          - name: echo
            command: echo ${X}
            output: CHILD_OUT
        """,
    )
    assert code == 0, doc
    one = nodes(doc)["one"]
    res = json.loads(one["outputVariables"][0].split("=", 1)[1])
    assert res["status"] == "succeeded"
    # the sub-DAG's variable names, not outputs.json keys (Dagu 1.30.2, call_local)
    assert res["outputs"] == {"CHILD_OUT": "hello"}
    assert one["children"][0]["dagRunId"] == res["dagRunId"]
    many = json.loads(Path(nodes(doc)["many"]["stdout"]).read_text())
    assert many["summary"] == {"total": 3, "succeeded": 3, "failed": 0}


def test_call_to_missing_dag_fails_step_without_sub_run(dagu_env: dict[str, str]) -> None:
    """Dagu 1.30.2 (compat case call_missing): the step fails with its lookup error and no
    child is recorded."""
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: call_missing
            call: no_such_dag
        """,
    )
    assert code == 1
    node = nodes(doc)["call_missing"]
    assert node["error"] == (
        'failed to execute step "call_missing": failed to find DAG "no_such_dag": '
        "failed to locate DAG no_such_dag: DAG no_such_dag not found: file does not exist"
    )
    assert node["children"] == []


def test_parallel_results_are_in_item_order(dagu_env: dict[str, str]) -> None:
    """Unlike Dagu (finish order), index i of `results`/`outputs` is always item i."""
    code, doc = run_dag(
        dagu_env,
        """
        steps:
          - name: fan
            call: child
            parallel:
              items: ["0.6", "0.3", "0"]
              maxConcurrent: 3
            params: "DELAY=${ITEM}"
            output: FAN
          - name: order
            command: echo "${FAN.outputs[0].GOT} ${FAN.outputs[1].GOT} ${FAN.outputs[2].GOT}"
            output: ORDER
        ---
        name: child
        params: DELAY=0
        steps:
          - name: nap
            command: sleep ${DELAY} && echo slept-${DELAY}
            output: GOT
        """,
    )
    assert code == 0, doc
    assert Path(nodes(doc)["order"]["stdout"]).read_text().strip() == (
        "slept-0.6 slept-0.3 slept-0"
    )
    fan = json.loads(Path(nodes(doc)["fan"]["stdout"]).read_text())
    assert [r["params"] for r in fan["results"]] == ["DELAY=0.6", "DELAY=0.3", "DELAY=0"]
