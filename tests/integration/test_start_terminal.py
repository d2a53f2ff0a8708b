"""`dagloop start` as a person sees it: the live view and the summary in a real pseudo-terminal,
Ctrl-C typed on that terminal, and the plain lines (no escape codes) on a pipe, also one whose
reader leaves early.

Every command is the real `python -m controller start`; the terminal is a real pty whose
output `tests.terminal.Screen` replays. Steps that must still be running when the test looks
wait at a `Gate` (a FIFO) that the test opens once it has seen what it expects: no sleeps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import dagu_home, run_cli, wait_until
from tests.terminal import PtyCommand, Screen

pytestmark = pytest.mark.timeout(90)

ESCAPE = "\x1b"
HEADER = re.compile(r"\d+/\d+ steps")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated DAGU_HOME on a colour terminal, with no NO_COLOR from the caller."""
    env = dagu_home(tmp_path)
    env.pop("NO_COLOR", None)
    env.update(TERM="xterm-256color", LANG="C.UTF-8")
    return env


class Gate:
    """Steps wait at `wait` (`read line < FIFO`) until the test lets them pass with `open`.

    The test holds the FIFO open for writing the whole time, so a step that reaches the gate
    late still finds its line there: no race between a step starting and the test opening.
    """

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.wait = f"read line < {path}"
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def open(self, steps: int = 1) -> None:
        """Let `steps` waits pass (each reads one line)."""
        os.write(self._fd, b"\n" * steps)

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.close()


@pytest.fixture
def terminals() -> Iterator[list[PtyCommand]]:
    """Commands a test starts in a terminal; any still running at its end are stopped."""
    started: list[PtyCommand] = []
    yield started
    for command in started:
        command.close()


def write_dag(env: dict[str, str], name: str, text: str) -> None:
    (Path(env["DAGU_HOME"]) / "dags" / f"{name}.yaml").write_text(textwrap.dedent(text))


def mixed_dag(env: dict[str, str], gate: Gate, marks: Path) -> None:
    """`mixed`: `fails` (exit 3, stderr `boom`), `skipped` (precondition not met), and
    `retrying`, which fails twice and then, retried, waits at the `gate`."""
    write_dag(
        env,
        "mixed",
        f"""
        type: graph
        steps:
          - name: retrying
            command: >-
              sh -c 'echo x >> {marks}/tries; if [ $(wc -l < {marks}/tries) -ge 3 ];
              then {gate.wait}; else echo failing >&2; exit 1; fi'
            retryPolicy: {{limit: 3, intervalSec: 0}}
          - name: fails
            command: sh -c 'echo boom >&2; exit 3'
          - name: skipped
            command: echo never
            preconditions:
              - condition: "false"
        handlerOn:
          exit:
            command: echo bye
        """,
    )


def lines_like(lines: list[str], pattern: str) -> list[int]:
    """The indexes of the lines that match `pattern`."""
    return [i for i, line in enumerate(lines) if re.match(pattern, line)]


def summary_of(lines: list[str], dag: str) -> list[str]:
    """The summary at the end of the output: from its heading to the last line."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"summary of {dag}: "))
    return lines[start:]


def test_live_view_and_summary_on_a_terminal(
    env: dict[str, str], gate: Gate, tmp_path: Path, terminals: list[PtyCommand]
) -> None:
    mixed_dag(env, gate, tmp_path)
    run = PtyCommand(["start", "mixed"], env, columns=200, rows=30)
    terminals.append(run)

    # While it runs: the header (DAG, run id, bar, done/total, percentage, elapsed time), the
    # retried step running with its retry count, and the failure and the first retry kept
    # above the live area with their exit codes.
    def retried_and_running(screen: Screen) -> object:
        shown = "\n".join(screen.visible())
        return "2/3 steps" in shown and re.search(r"^  retrying +\d+\.\ds  retry 2$", shown, re.M)

    run.read_until(retried_and_running)
    shown = run.screen.visible()
    assert re.match(r"mixed  run [0-9a-f-]{36}$", shown[-3])
    assert re.match(r"\S \[█{18}░{10}\] 2/3 steps  66%  \d+\.\ds$", shown[-2])
    assert "↻ retrying  exit=1  retrying (retry 1)" in shown
    failed = lines_like(shown, r"✗ fails  failed  exit=3  \d+\.\ds$")[0]
    assert shown[failed + 1] == "    boom"  # the last line of its stderr
    assert "\x1b[31m" in run.raw.decode()  # colour on a terminal

    gate.open()
    assert run.wait() == 1
    lines = run.screen.text()
    # The live area is gone and nothing was repeated, however many frames were drawn: the
    # lasting lines once each (the second retry has none), then the summary.
    assert not [line for line in lines if HEADER.search(line)]
    assert lines.count("↻ retrying  exit=1  retrying (retry 1)") == 1
    assert len(lines_like(lines, r"✗ fails  failed  exit=3  \d+\.\ds$")) == 1
    summary = summary_of(lines, "mixed")
    assert len(lines) == len(summary) + 3
    run_id = lines[-1].split()[-1]
    assert re.match(r"summary of mixed: failed in \d+\.\ds$", summary[0])
    assert re.match(r"  retrying  succeeded +\d+\.\ds  exit=0   retries=2$", summary[1])
    assert re.match(r"  fails     failed +\d+\.\ds  exit=3   retries=0$", summary[2])
    logs = Path(env["DAGU_HOME"]) / "logs" / "mixed" / run_id
    assert summary[3:8] == [
        '      error: failed to execute step "fails": exit status 3',
        "      stderr, last line:",
        "        boom",
        f"      stdout log: {logs / 'fails.out'}",
        f"      stderr log: {logs / 'fails.err'}",
    ]
    assert re.match(r"  skipped   skipped +\d+\.\ds  exit=-   retries=0$", summary[8])
    assert re.match(r"  onExit    succeeded +\d+\.\ds  exit=0   retries=0$", summary[9])
    assert summary[10:] == [
        f"next: dagloop status mixed --run-id {run_id}",
        f"      dagloop retry mixed --run-id {run_id}  (re-runs the failed steps)",
        f"failed mixed {run_id}",
    ]


def test_ctrl_c_stops_the_run_as_dagloop_stop_does(
    env: dict[str, str], gate: Gate, tmp_path: Path, terminals: list[PtyCommand]
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    # `work` gets its signalOnStop (SIGINT), notes it, and takes its time to stop (it waits
    # at the gate again): the view says the run is stopping meanwhile. Its own `shell: sh`
    # runs the trap itself: under the default `$SHELL -e -c "sh -c '...'"`, a shell that does
    # not exec its one command (dash, when SHELL is unset) would be ended by the SIGINT first.
    # `ready` says the trap is set.
    write_dag(
        env,
        "long",
        f"""
        steps:
          - name: work
            shell: sh
            command: >-
              trap "echo INT > {marks}/work" INT; echo > {marks}/ready;
              {gate.wait}; {gate.wait}
            signalOnStop: SIGINT
          - name: after
            command: echo never
        handlerOn:
          abort:
            command: sh -c 'echo abort >> {marks}/handlers'
          exit:
            command: sh -c 'echo exit >> {marks}/handlers'
        """,
    )
    run = PtyCommand(["start", "long"], env, columns=120, rows=20)
    terminals.append(run)
    run.read_until(lambda screen: any(line.startswith("  work ") for line in screen.visible()))
    wait_until(lambda: (marks / "ready").exists(), timeout=30)
    run.type(b"\x03")  # Ctrl-C: the terminal sends SIGINT to the foreground process group
    run.read_until(lambda screen: "stopping…" in "\n".join(screen.visible()))
    gate.open(2)  # a SIGINT that lands before the first wait began leaves two to pass
    assert run.wait() == 1
    assert (marks / "work").read_text() == "INT\n"
    assert (marks / "handlers").read_text() == "abort\nexit\n"
    lines = run.screen.text()
    run_id = lines[-1].split()[-1]
    assert lines[-1] == f"aborted long {run_id}"
    summary = summary_of(lines, "long")
    assert re.match(r"  work      aborted +\d+\.\ds  exit=\d+ +retries=0$", summary[1])
    assert re.match(r"  after     not_started +-  exit=-   retries=0$", summary[2])
    assert re.match(r"  onCancel  succeeded +\d+\.\ds  exit=0   retries=0$", summary[3])
    assert re.match(r"  onExit    succeeded +\d+\.\ds  exit=0   retries=0$", summary[4])
    _, out, _ = run_cli("status", "--json", "long", "--run-id", run_id, env=env)
    assert json.loads(out)["statusLabel"] == "aborted"


def test_narrow_and_short_terminal_never_wraps_the_live_view(
    env: dict[str, str], gate: Gate, terminals: list[PtyCommand]
) -> None:
    steps = "".join(
        f"  - name: a_rather_long_step_name_number_{i}\n    command: {gate.wait}\n"
        for i in range(6)
    )
    write_dag(env, "wide", "type: graph\nsteps:\n" + steps)
    run = PtyCommand(["start", "wide"], env, columns=30, rows=6)
    terminals.append(run)
    run.read_until(lambda screen: "  … and 4 more running" in screen.visible())
    shown = run.screen.visible()
    assert run.screen.wraps == 0
    assert all(len(line) < 30 for line in shown)
    assert shown[0].startswith("wide  run ")
    assert re.match(r"\S 0/6 steps  0%  \d+\.\ds$", shown[1])  # no room for the bar
    assert re.match(r"  a_rather_long_step… +\d+\.\ds$", shown[2])  # the name gives way
    gate.open(6)
    assert run.wait() == 0
    assert run.raw.decode().splitlines()[-1].startswith("\x1b[32msucceeded\x1b[0m wide ")


ONE_STEP = """
steps:
  - name: one
    command: 'false'
"""


def test_off_a_terminal_plain_lines_without_escape_codes(env: dict[str, str]) -> None:
    mixed_dag_plain = ONE_STEP.replace("'false'", "sh -c 'echo oops >&2; exit 2'")
    write_dag(env, "plain", mixed_dag_plain)
    code, out, err = run_cli("start", "plain", env=env)
    assert code == 1
    assert ESCAPE not in out and ESCAPE not in err
    lines = out.splitlines()
    run_id = lines[-1].split()[-1]
    assert re.match(r"failed    one \d+\.\ds exit=2$", lines[0])  # the event line, unchanged
    assert lines[1].startswith("summary of plain: failed in ")
    assert re.match(r"  one  failed +\d+\.\ds  exit=2   retries=0$", lines[2])
    assert "        oops" in lines
    assert lines[-3:] == [
        f"next: dagloop status plain --run-id {run_id}",
        f"      dagloop retry plain --run-id {run_id}  (re-runs the failed steps)",
        f"failed plain {run_id}",
    ]


@pytest.mark.parametrize(
    ("args", "extra_env", "live", "colour"),
    [
        ([], {"NO_COLOR": "1"}, True, False),
        (["--no-color"], {}, True, False),
        ([], {"TERM": "dumb"}, False, False),
        (["--progress=never"], {}, False, True),
    ],
)
def test_colour_and_live_view_switches_on_a_terminal(
    env: dict[str, str],
    terminals: list[PtyCommand],
    args: list[str],
    extra_env: dict[str, str],
    live: bool,
    colour: bool,
) -> None:
    write_dag(env, "one", ONE_STEP)
    run = PtyCommand(["start", *args, "one"], {**env, **extra_env})
    terminals.append(run)
    assert run.wait() == 1
    raw = run.raw.decode()
    assert ("\x1b[J" in raw) is live
    assert ("\x1b[31m" in raw) is colour
    if not live and not colour:
        assert ESCAPE not in raw
    lines = run.screen.text()
    if not live:  # plain lines; on a terminal they show a step's start too
        assert lines[:2] == ["running   one", lines[1]]
        assert re.match(r"failed    one \d+\.\ds exit=1$", lines[1])
    assert lines[-1].startswith("failed one ")


def test_quiet_on_a_terminal_prints_nothing(
    env: dict[str, str], terminals: list[PtyCommand]
) -> None:
    write_dag(env, "one", ONE_STEP)
    run = PtyCommand(["start", "--quiet", "one"], env)
    terminals.append(run)
    assert run.wait() == 1
    assert run.raw == b""


def test_progress_always_on_a_pipe_draws_the_view_without_colour(env: dict[str, str]) -> None:
    write_dag(env, "one", ONE_STEP)
    code, out, _ = run_cli("start", "--progress=always", "one", env=env)
    assert code == 1
    assert "\x1b[J" in out and "\x1b[31m" not in out
    screen = Screen(200, 24)
    screen.feed(out.replace("\n", "\r\n"))  # as a terminal showing the file (ONLCR)
    assert screen.text()[-1].startswith("failed one ")


def test_a_reader_that_leaves_does_not_break_the_run(env: dict[str, str], gate: Gate) -> None:
    # `dagloop start … | head -1`: the lines after the reader left go nowhere, and the run
    # still ends recorded with its own exit code (it was left running, then reaped as lost).
    write_dag(
        env,
        "piped",
        f"""
        steps:
          - name: first
            command: "true"
          - name: second
            command: {gate.wait}
          - name: third
            command: "false"
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "start", "piped"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"succeeded first ")
        proc.stdout.close()  # as `head -1` does
        gate.open()
        assert proc.wait(timeout=60) == 1
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, out, _ = run_cli("status", "--json", "piped", env=env)
    assert json.loads(out)["statusLabel"] == "failed"


def test_json_on_a_terminal_is_unchanged(env: dict[str, str], terminals: list[PtyCommand]) -> None:
    # the step lines on stderr, the run details on stdout; no live view, no summary
    write_dag(env, "one", ONE_STEP)
    run = PtyCommand(["start", "--json", "one"], env, columns=4000)
    terminals.append(run)
    assert run.wait() == 1
    lines = run.screen.text()
    assert "\x1b[J" not in run.raw.decode()
    assert re.match(r"failed    one \d+\.\ds exit=1$", lines[-2])
    assert json.loads(lines[-1])["statusLabel"] == "failed"
    assert not [line for line in lines if line.startswith("summary of ")]


def test_secrets_in_a_failed_steps_stderr_are_masked_where_it_is_shown(
    env: dict[str, str], terminals: list[PtyCommand]
) -> None:
    # a secret-named param (masked in the run log) and a DAG secret (masked in the step log)
    write_dag(
        env,
        "leaky",
        """
        params:
          - API_TOKEN: hunter2xyz
        secrets:
          - name: DB_PASSWORD
            provider: env
            key: MY_DB_PW
        steps:
          - name: leak
            command: sh -c 'echo "token $API_TOKEN pw $DB_PASSWORD" >&2; exit 1'
        """,
    )
    env["MY_DB_PW"] = "sup3rs3cret"
    _, out, _ = run_cli("start", "leaky", env=env)
    run = PtyCommand(["start", "leaky"], env)
    terminals.append(run)
    run.wait()
    for shown in (out, run.raw.decode()):
        assert "token ***** pw *******" in shown
        assert "hunter2xyz" not in shown and "sup3rs3cret" not in shown
