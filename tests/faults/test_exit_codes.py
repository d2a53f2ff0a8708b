"""Scenario 32 of issue 8: CLI exit codes. `start` exits 0 only for a succeeded run and for a
run skipped by a DAG-level precondition (recorded aborted "precondition not met", documented
in docs/compatibility.md); `status` exits non-zero for failed and unknown runs unless --json."""

from __future__ import annotations

import subprocess

import pytest

from tests.faults.conftest import HEARTBEAT_TIMEOUT, home_of, spawn, step_pgid, write_dag
from tests.faults.invariants import assert_invariants
from tests.helpers import run_cli, wait_until

pytestmark = pytest.mark.timeout(60)

DAGS = {
    "ok": ('steps:\n  - command: "true"\n', 0, "succeeded"),
    "bad": ("steps:\n  - command: exit 3\n", 1, "failed"),
    "partial": (
        'steps:\n  - command: exit 3\n    continueOn:\n      failure: true\n  - command: "true"\n',
        1,
        "partially_succeeded",
    ),
    "precond": (
        'preconditions:\n  - condition: "`echo no`"\n    expected: "yes"\n'
        'steps:\n  - command: "true"\n',
        0,
        "aborted",
    ),
}


@pytest.mark.parametrize("name", list(DAGS))
def test_32_start_and_status_exit_codes(fenv: dict[str, str], name: str) -> None:
    text, want, label = DAGS[name]
    write_dag(fenv, name, text)
    code, out, err = run_cli("start", name, env=fenv)
    assert code == want, out + err
    assert label in out
    code, out, _ = run_cli("status", name, env=fenv)
    assert code == (1 if label == "failed" else 0), out
    code, _, _ = run_cli("status", name, "--json", env=fenv)
    assert code == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_32_start_stopped_run_exits_1(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "long", "steps:\n  - name: s\n    command: sleep 300\n")
    p = spawn(fenv, procs, "start", "-q", "long")
    wait_until(lambda: step_pgid(fenv, "s"), 15)
    assert run_cli("stop", "long", env=fenv)[0] == 0
    assert p.wait(timeout=15) == 1
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_32_status_of_unknown_dag_or_run_is_non_zero(fenv: dict[str, str]) -> None:
    write_dag(fenv, "ok", DAGS["ok"][0])
    assert run_cli("status", "nope", env=fenv)[0] == 1
    assert run_cli("start", "-q", "ok", env=fenv)[0] == 0
    assert run_cli("status", "ok", "--run-id", "no-such-run", env=fenv)[0] == 1
    assert run_cli("status", "ok", "--run-id", "no-such-run", "--json", env=fenv)[0] == 1
    assert run_cli("start", "missing-dag", env=fenv)[0] == 1
