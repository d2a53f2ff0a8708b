"""What `start` shows, as values: the display chosen for a stream, the live view's frame fitted
to a terminal, the final summary, and the stderr tail of a failed step."""

from __future__ import annotations

import pytest

from controller.engine.exits import STDERR_TAIL_MARK
from controller.engine.graph import Node
from controller.engine.liveview import RunningStep, Segment, columns, fit, frame_lines
from controller.engine.progress import (
    Display,
    StepSummary,
    choose_display,
    final_lines,
    node_stderr_tail,
    seconds_text,
    summary_lines,
)
from model.spec import StepSpec
from model.status import RunStatus, StepStatus

UTF8 = Display(mode="live", color=False, tty=True, unicode=True)
ASCII = Display(mode="live", color=False, tty=True, unicode=False)


def display(**kw: object) -> Display:
    args: dict[str, object] = {
        "progress": "auto",
        "quiet": False,
        "no_color": False,
        "tty": True,
        "environ": {"TERM": "xterm"},
        "encoding": "utf-8",
    }
    args.update(kw)
    return choose_display(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "mode", "color"),
    [
        ({}, "live", True),
        ({"tty": False}, "lines", False),
        ({"quiet": True}, "quiet", True),
        ({"quiet": True, "progress": "always"}, "quiet", True),
        ({"progress": "never"}, "lines", True),
        ({"progress": "always", "tty": False}, "live", False),
        ({"environ": {"TERM": "dumb"}}, "lines", False),
        ({"environ": {"TERM": "dumb"}, "progress": "always"}, "live", False),
        ({"environ": {"TERM": "xterm", "NO_COLOR": "1"}}, "live", False),
        ({"environ": {"TERM": "xterm", "NO_COLOR": ""}}, "live", True),  # set but empty
        ({"no_color": True}, "live", False),
    ],
)
def test_display_follows_the_terminal_and_the_switches(
    kw: dict[str, object], mode: str, color: bool
) -> None:
    chosen = display(**kw)
    assert (chosen.mode, chosen.color) == (mode, color)


@pytest.mark.parametrize(
    ("encoding", "unicode"), [("utf-8", True), ("UTF8", True), ("ascii", False), (None, False)]
)
def test_spinner_and_bar_characters_only_on_utf8(encoding: str | None, unicode: bool) -> None:
    assert display(encoding=encoding).unicode is unicode


def frame(**kw: object) -> list[str]:
    args: dict[str, object] = {
        "dag_name": "etl",
        "run_id": "01a23c40-a4b6-7607-9671-78a01c74609e",
        "done": 1,
        "total": 4,
        "elapsed": 3.42,
        "running": [RunningStep("transform", 1.25, 1), RunningStep("load", 0.3, 0, "run 2")],
        "stopping": False,
        "tick": 3,
        "width": 80,
        "height": 24,
        "display": UTF8,
    }
    args.update(kw)
    return frame_lines(**args)  # type: ignore[arg-type]


def test_frame_has_the_header_the_bar_and_one_line_per_running_step() -> None:
    assert frame() == [
        "etl  run 01a23c40-a4b6-7607-9671-78a01c74609e",
        "⠸ [███████░░░░░░░░░░░░░░░░░░░░░] 1/4 steps  25%  3.4s",
        "  transform    1.2s  retry 1",
        "  load         0.3s  run 2",
    ]


def test_frame_says_when_the_run_is_stopping() -> None:
    assert frame(stopping=True)[0].endswith("  stopping…")


@pytest.mark.parametrize("width", [8, 20, 31, 45])
def test_frame_fits_a_narrow_terminal(width: int) -> None:
    lines = frame(width=width)
    assert all(columns(line) <= width - 1 for line in lines)
    assert lines[1].startswith("⠸")


def test_frame_drops_the_bar_before_the_counts() -> None:
    assert frame(width=30)[1] == "⠸ 1/4 steps  25%  3.4s"


def test_frame_on_a_short_terminal_counts_the_steps_it_cannot_show() -> None:
    running = [RunningStep(f"s{i}", 1.0, 0) for i in range(10)]
    lines = frame(running=running, height=6)
    assert len(lines) == 5
    assert lines[-1] == "  … and 8 more running"


def test_frame_without_utf8_is_ascii() -> None:
    lines = frame(display=ASCII, stopping=True, running=[RunningStep("x" * 60, 1.0, 0)], width=40)
    assert all(line.isascii() for line in lines)
    assert lines[1] == "\\ [###---------] 1/4 steps  25%  3.4s"
    assert lines[2] == "  " + "x" * 28 + "~    1.0s"


def test_fit_counts_wide_characters_as_two_columns() -> None:
    line = fit([Segment("処理" * 10)], 9, UTF8)
    assert columns(line) <= 9
    assert line.endswith("…")


def test_fit_paints_only_with_colour() -> None:
    coloured = Display(mode="live", color=True, tty=True, unicode=True)
    assert fit([Segment("ok", "32")], 10, coloured) == "\x1b[32mok\x1b[0m"
    assert fit([Segment("ok", "32")], 10, UTF8) == "ok"


ROWS = [
    StepSummary(name="extract", status=StepStatus.SUCCEEDED, seconds=1.04, exit_code=0, retries=0),
    StepSummary(
        name="transform",
        status=StepStatus.FAILED,
        seconds=3.5,
        exit_code=1,
        retries=2,
        error=f'failed to execute step "transform": exit status 1{STDERR_TAIL_MARK}\nboom\n',
        stderr_tail=("boom",),
        stdout_path="/l/transform.out",
        stderr_path="/l/transform.err",
    ),
    StepSummary(name="load", status=StepStatus.SKIPPED, seconds=None, exit_code=None, retries=0),
    StepSummary(name="onExit", status=StepStatus.SUCCEEDED, seconds=0.01, exit_code=0, retries=0),
]


def test_summary_lists_every_step_with_status_duration_exit_code_and_retries() -> None:
    lines = summary_lines(ROWS, dag_name="etl", status=RunStatus.FAILED, seconds=4.6, color=False)
    assert lines == [
        "summary of etl: failed in 4.6s",
        "  extract    succeeded    1.0s  exit=0   retries=0",
        "  transform  failed       3.5s  exit=1   retries=2",
        '      error: failed to execute step "transform": exit status 1',
        "      stderr, last line:",
        "        boom",
        "      stdout log: /l/transform.out",
        "      stderr log: /l/transform.err",
        "  load       skipped         -  exit=-   retries=0",
        "  onExit     succeeded    0.0s  exit=0   retries=0",
    ]


def test_summary_is_coloured_only_when_asked() -> None:
    plain = summary_lines(ROWS, dag_name="etl", status=RunStatus.FAILED, seconds=1, color=False)
    coloured = summary_lines(ROWS, dag_name="etl", status=RunStatus.FAILED, seconds=1, color=True)
    assert not any("\x1b" in line for line in plain)
    assert "\x1b[31mfailed   \x1b[0m" in coloured[2]


def test_final_lines_end_with_the_outcome_line_scripts_read() -> None:
    assert final_lines(dag_name="etl", run_id="r1", status=RunStatus.SUCCEEDED, color=False) == [
        "next: dagloop status etl --run-id r1",
        "succeeded etl r1",
    ]
    failed = final_lines(dag_name="etl", run_id="r1", status=RunStatus.FAILED, color=False)
    assert failed[1] == "      dagloop retry etl --run-id r1  (re-runs the failed steps)"
    assert failed[-1] == "failed etl r1"


def test_stderr_tail_keeps_the_last_lines_without_escape_codes() -> None:
    node = Node(step=StepSpec(name="s", command=["true"]), kind="step", position=0)
    node.err_tail = b"one\n\x1b[31mtwo\x1b[0m\n\n\x1b]0;title\x07three\rback\n" + b"x" * 300 + b"\n"
    # a carriage return ends a line too, as a progress bar's redraws do
    assert node_stderr_tail(node, 4) == ["two", "three", "back", "x" * 200]
    node.err_tail = b""  # the execution wrote nothing on stderr
    assert node_stderr_tail(node) == []


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.04, "0.0s"), (59.94, "59.9s"), (245, "4m05s"), (7380, "2h03m")]
)
def test_durations_for_people(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
