"""Process hygiene: stop, signals, escalation, kill -9 of the runner, big outputs."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import group_alive, run_cli, wait_until

pytestmark = pytest.mark.timeout(60)


def write(env: dict[str, str], name: str, text: str) -> None:
    (Path(env["DAGU_HOME"]) / "dags" / f"{name}.yaml").write_text(textwrap.dedent(text))


def start_bg(env: dict[str, str], name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "start", "--json", "-q", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def db(env: dict[str, str]) -> Path:
    return Path(env["DAGU_HOME"]) / "data" / "dagloop.db"


def step_pgid(env: dict[str, str], step: str) -> int | None:
    if not db(env).exists():
        return None
    con = sqlite3.connect(db(env))
    try:
        row = con.execute("SELECT pgid FROM steps WHERE name=? AND status=1", (step,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return row[0] if row and row[0] else None


def test_stop_command_aborts_and_runs_abort_handlers(
    dagu_env: dict[str, str], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    write(
        dagu_env,
        "s",
        f"""
        handlerOn:
          abort:
            command: echo abort-$DAG_RUN_STATUS >> {marks}
          exit:
            command: echo exit-$DAG_RUN_STATUS >> {marks}
        steps:
          - name: sleeper
            command: sleep 300
          - name: after
            command: "true"
        """,
    )
    p = start_bg(dagu_env, "s")
    try:
        pgid = wait_until(lambda: step_pgid(dagu_env, "sleeper"))
        assert isinstance(pgid, int)
        code, _out, err = run_cli("stop", "s", env=dagu_env)
        assert code == 0, err
        out_text, _ = p.communicate(timeout=20)
        doc = json.loads(out_text.strip().splitlines()[-1])
        assert p.returncode == 1
        assert doc["statusLabel"] == "aborted"
        assert [n["statusLabel"] for n in doc["nodes"]] == ["aborted", "not_started"]
        assert marks.read_text().split() == ["abort-aborted", "exit-aborted"]
        assert not group_alive(pgid)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigterm_escalates_to_sigkill_for_trapping_step(dagu_env: dict[str, str]) -> None:
    write(
        dagu_env,
        "trap",
        """
        maxCleanUpTimeSec: 1
        steps:
          - name: stubborn
            shell: bash
            command: trap '' TERM; sleep 300 & wait; sleep 300
        """,
    )
    p = start_bg(dagu_env, "trap")
    try:
        pgid = wait_until(lambda: step_pgid(dagu_env, "stubborn"))
        assert isinstance(pgid, int)
        p.send_signal(signal.SIGTERM)
        out_text, _ = p.communicate(timeout=20)
        doc = json.loads(out_text.strip().splitlines()[-1])
        assert doc["statusLabel"] == "aborted"
        wait_until(lambda: not group_alive(pgid), timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kill_9_of_runner_leaves_no_orphan_after_reap(dagu_env: dict[str, str]) -> None:
    write(
        dagu_env,
        "k",
        """
        steps:
          - name: sleeper
            command: sleep 300
        """,
    )
    p = start_bg(dagu_env, "k")
    try:
        pgid = wait_until(lambda: step_pgid(dagu_env, "sleeper"))
        assert isinstance(pgid, int)
        p.kill()
        p.wait()
        assert group_alive(pgid)  # the orphan exists until someone finds the run lost
        _, out, _ = run_cli("status", "k", "--json", env=dagu_env)
        assert json.loads(out)["liveness"] == "lost"
        _, out, _ = run_cli("status", "k", "--reap", env=dagu_env)
        assert "failed" in out
        wait_until(lambda: not group_alive(pgid), timeout=5)
        _code, out, _ = run_cli("status", "k", "--json", env=dagu_env)
        doc = json.loads(out)
        assert doc["statusLabel"] == "failed"
        assert doc["error"].startswith("lost: ")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_fifty_megabytes_stream_to_file(dagu_env: dict[str, str]) -> None:
    write(
        dagu_env,
        "big",
        """
        steps:
          - name: big
            command: head -c 52428800 /dev/zero
        """,
    )
    code, out, err = run_cli("start", "--json", "-q", "big", env=dagu_env)
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert Path(doc["nodes"][0]["stdout"]).stat().st_size == 52428800
