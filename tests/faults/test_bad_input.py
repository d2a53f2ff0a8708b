"""Bad input (issue 8 #11-15, #23): malformed DAG files get `FILE:LINE: field: message` and a
non-zero exit while other DAGs keep running; a missing binary fails its step with 127; huge
files and alias bombs are refused in bounded time and memory without blocking the loop; a
damaged database stops the controller with a clear error before it acts."""

from __future__ import annotations

import json
import re
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    HEARTBEAT_TIMEOUT,
    home_of,
    instance_status,
    query,
    spawn,
    write_dag,
)
from tests.faults.invariants import assert_invariants, db_path
from tests.helpers import run_cli, wait_until

pytestmark = pytest.mark.timeout(90)

BAD = {
    # 11: malformed YAML
    "syntax": ("steps: [\n", r"syn\w*\.yaml:2: invalid YAML"),
    # 12: unknown keys
    "unknown": ("foo: 1\nsteps:\n  - command: echo\n", r":1: foo: unknown key 'foo'"),
    # 13: missing command, unknown depends, duplicate names, bad cron
    "nothing": ("steps:\n  - name: a\n", r":2: steps\[0\]: step has nothing to run"),
    "depends": (
        "steps:\n  - name: a\n    command: echo\n    depends: [zzz]\n",
        r":4: steps\[0\]\.depends: unknown step 'zzz'",
    ),
    "dupname": (
        "steps:\n  - name: a\n    command: echo\n  - name: a\n    command: echo\n",
        r":4: steps\[1\]\.name: duplicate step name 'a'",
    ),
    "cron": ('schedule: "99 * * * *"\nsteps:\n  - command: echo\n', r":1: schedule: invalid cron"),
    # 14: a cycle
    "cycle": (
        "steps:\n  - name: a\n    command: echo\n    depends: [b]\n"
        "  - name: b\n    command: echo\n    depends: [a]\n",
        r"steps\[\d\]\.depends: dependency cycle: ",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_11_to_14_bad_dag_files_clear_errors_non_zero_exit(fenv: dict[str, str], case: str) -> None:
    text, pattern = BAD[case]
    path = write_dag(fenv, case, text)
    code, out, err = run_cli("validate", case, env=fenv)
    assert code == 1
    line = (out + err).strip().splitlines()[0]
    assert line.startswith(f"{path}:"), line
    assert re.search(pattern, line), line
    # start refuses it the same way: a clear line, exit 1, no traceback, no run
    code, out, err = run_cli("start", case, env=fenv)
    assert code == 1 and "Traceback" not in err and str(path) in err
    assert query(fenv, "SELECT * FROM runs") == []
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_11_to_14_other_dags_keep_running_beside_bad_files(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    for case, (text, _) in BAD.items():
        write_dag(fenv, case, text)
    write_dag(fenv, "good", 'steps:\n  - command: "true"\n')
    ctl = spawn(fenv, procs, "scheduler", stderr=subprocess.PIPE)
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    assert run_cli("enqueue", "good", env=fenv)[0] == 0
    wait_until(lambda: query(fenv, "SELECT status FROM runs WHERE dag_name='good'") == [(4,)], 15)
    ctl.send_signal(signal.SIGTERM)
    _, err = ctl.communicate(timeout=15)
    assert ctl.returncode == 0
    log = err.decode()
    for case in BAD:
        assert f"{case}.yaml" in log  # each invalid file reported
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.mark.parametrize("log_output", ["separate", "merged"])
def test_13_missing_binary_fails_the_step_with_127_and_stderr_tail(
    fenv: dict[str, str], log_output: str
) -> None:
    dag = f"logOutput: {log_output}\nsteps:\n  - command: definitely-not-a-binary-xyz --flag\n"
    write_dag(fenv, "nobin", dag)
    code, out, _ = run_cli("start", "--json", "-q", "nobin", env=fenv)
    assert code == 1
    node = json.loads(out.strip().splitlines()[-1])["nodes"][0]
    assert node["statusLabel"] == "failed" and node["exitCode"] == 127
    assert "definitely-not-a-binary-xyz" in node["error"] and "stderr" in node["error"]
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def _bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    lines.append("steps:\n  - command: echo *j")
    return "\n".join(lines) + "\n"


def test_15_huge_file_and_alias_bomb_refused_fast_in_bounded_memory(fenv: dict[str, str]) -> None:
    write_dag(fenv, "bomb", _bomb())
    big = home_of(fenv) / "dags" / "big.yaml"
    big.write_text("steps:\n  - command: echo\n" + "# padding\n" * 1_100_000)
    assert big.stat().st_size > 10_000_000
    for name, message in (("bomb", "alias"), ("big", "larger than")):
        t0 = time.monotonic()
        code, out, err = run_cli("validate", name, env=fenv)
        assert time.monotonic() - t0 < 10
        assert code == 1 and message in out + err, out + err
    # children's peak RSS (the largest child so far): a bomb expanded would take gigabytes
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 400 * 1024


def test_15_loop_is_not_blocked_by_huge_files_and_bombs(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(fenv, "bomb", _bomb())
    (home_of(fenv) / "dags" / "big.yaml").write_text("x: 1\n" + "#" * 11_000_000 + "\n")
    write_dag(fenv, "good", 'steps:\n  - command: "true"\n')
    ctl = spawn(fenv, procs, "scheduler")
    wait_until(lambda: instance_status(fenv, ctl.pid) == "active", 10)
    t0 = time.monotonic()
    assert run_cli("enqueue", "good", env=fenv)[0] == 0
    wait_until(lambda: query(fenv, "SELECT status FROM runs WHERE dag_name='good'") == [(4,)], 15)
    assert time.monotonic() - t0 < 8
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=15) == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def _with_history(env: dict[str, str]) -> Path:
    write_dag(env, "ok", 'steps:\n  - command: "true"\n')
    for _ in range(3):
        assert run_cli("start", "-q", "ok", env=env)[0] == 0
    return db_path(home_of(env))


def test_23_garbage_database_stops_the_controller_with_a_clear_error(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    db = _with_history(fenv)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    ctl = spawn(fenv, procs, "scheduler", stderr=subprocess.PIPE)
    _, err = ctl.communicate(timeout=20)
    assert ctl.returncode == 2
    assert "cannot start" in err.decode() and str(db) in err.decode()
    assert "Traceback" not in err.decode()


def test_23_torn_database_fails_integrity_check_at_start(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    db = _with_history(fenv)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    assert pages > 3
    data = bytearray(db.read_bytes())
    for p in range(2, pages):  # keep the header page, tear the rest
        data[p * page + 8 : p * page + 64] = b"\xff" * 56
    db.write_bytes(bytes(data))
    ctl = spawn(fenv, procs, "scheduler", stderr=subprocess.PIPE)
    _, err = ctl.communicate(timeout=20)
    text = err.decode()
    assert ctl.returncode == 2, text
    assert "cannot start" in text and str(db) in text, text
    assert any(w in text for w in ("integrity_check", "damaged", "malformed")), text
    assert "Traceback" not in text


def test_23_torn_log_file_leaves_other_runs_unaffected(fenv: dict[str, str]) -> None:
    _with_history(fenv)
    rows = query(fenv, "SELECT run_id, log_file FROM runs ORDER BY id")
    torn = Path(str(rows[0][1]))
    torn.write_bytes(b"\xff\xfe\x00garbage" * 10)
    code, out, err = run_cli("status", "ok", "--run-id", str(rows[0][0]), env=fenv)
    assert code == 0, err
    code, out, err = run_cli("status", "ok", "--run-id", str(rows[1][0]), "--json", env=fenv)
    assert code == 0 and json.loads(out)["statusLabel"] == "succeeded"
    assert run_cli("start", "-q", "ok", env=fenv)[0] == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
