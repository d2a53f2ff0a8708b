"""A step's stderr tail: the error (`Pump.recent_stderr`) and the summary
(`progress.node_stderr_tail`) read the stderr of the current execution the pump kept in
memory, masked, never a log file: a merged step's `.log` holds stdout too (`logOutput:
merged`), and a separate step's `.err` holds the stderr of its earlier attempts too.
"""

from __future__ import annotations

import selectors
from pathlib import Path

from controller.engine.graph import Node
from controller.engine.progress import node_stderr_tail
from controller.engine.pump import (
    ERR_TAIL_BYTES,
    Pump,
    close_logs,
    keep_tail,
    log_paths,
    open_logs,
)
from controller.secrets import SECRET_MASK, SecretMasker
from model.spec import StepSpec

SECRET = "token-4f1e-secret"


def _node(tmp_path: Path, *, merged: bool) -> Node:
    node = Node(step=StepSpec(name="s", command=["true"]), kind="step", position=0, merged=merged)
    node.stdout_path, node.stderr_path = log_paths(node, tmp_path)
    return node


def _pump(tmp_path: Path) -> Pump:
    pump = Pump(
        selectors.DefaultSelector(),
        max_log_bytes=1 << 20,
        max_output_size=1 << 20,
        log_dir=tmp_path,
    )
    pump.masker = SecretMasker([SECRET])
    return pump


def test_a_merged_node_has_one_log_path_for_both_streams(tmp_path: Path) -> None:
    assert log_paths(_node(tmp_path, merged=True), tmp_path) == (str(tmp_path / "s.log"),) * 2
    assert log_paths(_node(tmp_path, merged=False), tmp_path) == (
        str(tmp_path / "s.out"),
        str(tmp_path / "s.err"),
    )


def test_merged_error_tail_is_stderr_alone_with_a_split_secret_masked(tmp_path: Path) -> None:
    node = _node(tmp_path, merged=True)
    Path(node.stdout_path).write_text("stdout line\n")  # the .log: never quoted as stderr
    keep_tail(node, b"x" * 3000 + b"\nkey=" + SECRET[:6].encode())
    keep_tail(node, SECRET[6:].encode() + b"\nlast\n")  # the value split across two reads

    text = _pump(tmp_path).recent_stderr(node)

    assert text.endswith(f"\nkey={SECRET_MASK}\nlast\n") and "stdout" not in text
    assert len(text.encode()) <= 1024


def test_separate_error_tail_is_this_executions_stderr_not_the_err_file(tmp_path: Path) -> None:
    node = _node(tmp_path, merged=False)
    Path(node.stderr_path).write_text("attempt 1\nattempt 2\n")  # earlier attempts, logged
    keep_tail(node, b"attempt 3\n")
    assert _pump(tmp_path).recent_stderr(node) == "attempt 3\n"


def test_a_new_execution_starts_with_an_empty_tail(tmp_path: Path) -> None:
    node = _node(tmp_path, merged=False)
    keep_tail(node, b"oops from the first attempt\n")
    open_logs(node, 1 << 20)  # the retry's execution begins
    try:
        assert node.err_tail == b"" and _pump(tmp_path).recent_stderr(node) == ""
        assert Path(node.stderr_path).read_bytes() == b""  # the log itself is kept as is
    finally:
        close_logs(node)


def test_the_kept_tail_is_bounded(tmp_path: Path) -> None:
    node = _node(tmp_path, merged=True)
    for _ in range(5):
        keep_tail(node, b"y" * ERR_TAIL_BYTES)
    keep_tail(node, b"end\n")
    assert len(node.err_tail) == ERR_TAIL_BYTES and node.err_tail.endswith(b"yend\n")


def test_summary_tail_comes_from_memory_merged_or_not(tmp_path: Path) -> None:
    merged, separate = _node(tmp_path, merged=True), _node(tmp_path, merged=False)
    Path(merged.stdout_path).write_text("out\nerr-in-log\n")
    keep_tail(merged, b"boom\n\n")
    Path(separate.stderr_path).write_text("one\ntwo\n")  # an earlier attempt's, logged
    keep_tail(separate, b"three\nfour\n")
    assert node_stderr_tail(merged) == ["boom"]
    assert node_stderr_tail(separate) == ["three", "four"]
