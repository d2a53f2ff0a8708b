"""The `dagloop` command line as a script sees it: usage, exit codes, `--json` documents, the
common options, and `cleanup`'s confirmation on a terminal (a real pty) and on a pipe.

Every command runs as a real `python -m controller` subprocess (`tests.helpers.run_cli`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import COMMANDS
from tests.helpers import dagu_home, run_cli

OK_DAG = "steps:\n  - name: a\n    command: 'true'\n"
FAIL_DAG = "steps:\n  - name: a\n    command: 'false'\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated DAGU_HOME with DAGs `ok` and `bad` (its step fails)."""
    env = dagu_home(tmp_path)
    dags = Path(env["DAGU_HOME"]) / "dags"
    (dags / "ok.yaml").write_text(OK_DAG)
    (dags / "bad.yaml").write_text(FAIL_DAG)
    return env


def one_json(out: str) -> object:
    """stdout must be exactly one JSON document."""
    return json.loads(out)


def one_error_line(code: int, out: str, err: str) -> None:
    """A failure: exit 1, nothing on stdout, one line on stderr."""
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err


# -- usage and exit codes -----------------------------------------------------------------------


def test_bare_dagloop_prints_usage_on_stderr_and_exits_2() -> None:
    code, out, err = run_cli()
    assert code == 2
    assert out == ""
    assert err.startswith("usage: dagloop")


def test_help_points_at_the_exit_codes_and_the_cli_page() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "Exit codes: 0 done, 1 failed or refused, 2 usage error" in out
    assert "docs/cli.md" in out


def test_unknown_option_is_a_usage_error() -> None:
    code, out, err = run_cli("version", "--no-such-option")
    assert code == 2
    assert out == ""
    assert "usage: dagloop version" in err


def test_every_argument_of_every_verb_has_help_text() -> None:
    missing = []
    for verb, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(f"controller.commands.{module}").configure(parser)
        missing += [f"{verb} {a.dest}" for a in parser._actions if not a.help]
    assert missing == []


def test_every_verb_but_version_takes_the_common_options() -> None:
    for verb, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(f"controller.commands.{module}").configure(parser)
        options = {o for a in parser._actions for o in a.option_strings}
        if verb != "version":
            assert {"-c", "--config", "--dagu-home"} <= options, verb


def test_dagu_home_option_wins_over_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "other"
    code, out, _ = run_cli("config", "--json", "--dagu-home", str(other), env=env)
    assert code == 0
    rows = {r["key"]: r for r in one_json(out)}  # type: ignore[attr-defined]
    assert rows["home"]["value"] == str(other)
    assert rows["home"]["source"] == "cli"


# -- --json on every verb that reports something ------------------------------------------------


def test_version_json() -> None:
    code, out, _ = run_cli("version", "--json")
    assert code == 0
    assert set(one_json(out)) == {"version"}  # type: ignore[arg-type]


def test_enqueue_and_dequeue_json_are_run_summaries(env: dict[str, str]) -> None:
    code, out, _ = run_cli("enqueue", "--json", "-r", "q1", "ok", env=env)
    assert code == 0
    queued = one_json(out)
    assert queued["name"] == "ok"  # type: ignore[index]
    assert queued["dagRunId"] == "q1"  # type: ignore[index]
    assert queued["statusLabel"] == "queued"  # type: ignore[index]
    code, out, _ = run_cli("dequeue", "--json", "ok", "-r", "q1", env=env)
    assert code == 0
    dequeued = one_json(out)
    assert dequeued["dagRunId"] == "q1"  # type: ignore[index]
    assert dequeued["statusLabel"] == "aborted"  # type: ignore[index]
    one_error_line(*run_cli("dequeue", "--json", "ok", "-r", "q1", env=env))


def test_enqueue_json_of_a_missing_dag_is_one_error_line(env: dict[str, str]) -> None:
    one_error_line(*run_cli("enqueue", "--json", "nope", env=env))


def test_stop_json_with_nothing_running_is_one_error_line(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "ok", env=env)[0] == 0
    one_error_line(*run_cli("stop", "--json", "ok", env=env))


def test_retry_and_restart_json_print_the_new_attempt(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "r1", "bad", env=env)[0] == 1
    code, out, _ = run_cli("retry", "--json", "-r", "r1", "bad", env=env)
    assert code == 1  # the step fails again
    retried = one_json(out)
    assert retried["dagRunId"] == "r1"  # type: ignore[index]
    assert retried["statusLabel"] == "failed"  # type: ignore[index]
    code, out, _ = run_cli("restart", "--json", "-r", "r1", "bad", env=env)
    assert code == 1
    restarted = one_json(out)
    assert restarted["name"] == "bad"  # type: ignore[index]
    assert restarted["dagRunId"] != "r1"  # type: ignore[index]


def test_validate_json(env: dict[str, str]) -> None:
    code, out, _ = run_cli("validate", "--json", "ok", env=env)
    assert code == 0
    doc = one_json(out)
    assert [f["valid"] for f in doc["files"]] == [True]  # type: ignore[index]


def test_cleanup_json_lists_the_deleted_runs(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "c1", "ok", env=env)[0] == 0
    code, out, _ = run_cli("cleanup", "--json", "-y", "--retention-days", "0", "ok", env=env)
    assert code == 0
    doc = one_json(out)
    assert doc["name"] == "ok"  # type: ignore[index]
    assert doc["retentionDays"] == 0  # type: ignore[index]
    assert doc["dryRun"] is False  # type: ignore[index]
    assert [r["dagRunId"] for r in doc["runs"]] == ["c1"]  # type: ignore[index]
    assert run_cli("status", "ok", "-r", "c1", env=env)[0] == 1


# -- cleanup asks on a terminal, refuses on a pipe without -y -----------------------------------


def run_on_pty(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str, str]:
    """`python -m controller ARGS` with a pseudo-terminal as stdin, `answer` already typed
    (the terminal buffers the line until the command reads it); stdout and stderr piped."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", *args],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        os.close(secondary)
        secondary = -1
        os.write(primary, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        if secondary >= 0:
            os.close(secondary)
        os.close(primary)
    return proc.returncode, out.decode(), err.decode()


def test_cleanup_on_a_pipe_without_yes_refuses_and_keeps_the_runs(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "k1", "ok", env=env)[0] == 0
    code, out, err = run_cli("cleanup", "--retention-days", "0", "ok", env=env, input_text="y\n")
    one_error_line(code, out, err)
    assert "-y/--yes" in err
    assert run_cli("status", "ok", "-r", "k1", env=env)[0] == 0


def test_cleanup_dry_run_on_a_pipe_never_asks(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "d1", "ok", env=env)[0] == 0
    code, out, err = run_cli(
        "cleanup", "--dry-run", "--retention-days", "0", "ok", env=env, input_text=""
    )
    assert code == 0
    assert out == "would delete ok d1 (succeeded)\n"
    assert err == ""
    assert run_cli("status", "ok", "-r", "d1", env=env)[0] == 0


def test_cleanup_on_a_terminal_deletes_after_yes(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "t1", "ok", env=env)[0] == 0
    code, out, err = run_on_pty(["cleanup", "--retention-days", "0", "ok"], env, b"y\n")
    assert code == 0
    assert "delete 1 run(s) of ok" in err and "[y/N]" in err
    assert out == "deleted ok t1 (succeeded)\n"
    assert run_cli("status", "ok", "-r", "t1", env=env)[0] == 1


def test_cleanup_on_a_terminal_keeps_the_runs_unless_yes(env: dict[str, str]) -> None:
    assert run_cli("start", "-q", "-r", "t2", "ok", env=env)[0] == 0
    code, out, err = run_on_pty(["cleanup", "--retention-days", "0", "ok"], env, b"\n")
    assert code == 1
    assert out == ""
    assert err.rstrip().endswith("dagloop cleanup: not confirmed: nothing deleted")
    assert run_cli("status", "ok", "-r", "t2", env=env)[0] == 0
