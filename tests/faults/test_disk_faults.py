"""Disk scenarios of issue 8: #22 disk full (a small tmpfs) during a step and during a state
write, #24 a step writing far more than the per-step log cap."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import logfile
from controller.runjournal import JOURNAL_FILE
from tests.faults.conftest import HEARTBEAT_TIMEOUT, home_of, query, run_row, spawn, write_dag
from tests.faults.invariants import assert_invariants
from tests.helpers import run_cli, wait_until

pytestmark = pytest.mark.timeout(60)


def _mount_tmpfs(mnt: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at `mnt` (needs root and mount rights; skipped otherwise, with the
    reason); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (id -u is not 0)")
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs outside DAGU_HOME (for the log dir)."""
    yield from _mount_tmpfs(tmp_path / "small")


@pytest.fixture
def data_disk(fenv: dict[str, str]) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted as DAGU_HOME/data, where the invariants look for the database."""
    yield from _mount_tmpfs(home_of(fenv) / "data")


ENOSPC = "(ENOSPC, errno 28)"


def _one_clear_line(err: str) -> str:
    """stderr must be exactly one line (no traceback); returns it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _error_totals(env: dict[str, str]) -> dict[str, int]:
    rows = query(env, "SELECT key, value FROM meta WHERE key LIKE 'errors.%'")
    return {str(k): int(v) for k, v in rows}  # type: ignore[call-overload]


def _fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the filler file (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_22_disk_full_during_a_step_fails_the_step_not_the_store(
    fenv: dict[str, str], small_disk: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    env = dict(fenv, DAGU_LOG_DIR=str(small_disk))
    ctl = spawn(env, procs, "scheduler")  # the controller must stay up through all of it
    write_dag(env, "fill", "steps:\n  - name: fill\n    command: head -c 4000000 /dev/zero\n")
    code, out, err = run_cli("start", "--json", "-q", "fill", env=env)
    assert code == 1, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["statusLabel"] == "failed"
    node = doc["nodes"][0]
    assert node["statusLabel"] == "failed" and node["exitCode"] != 0
    assert f"no space left on device {ENOSPC} on {small_disk}" in node["error"], node["error"]
    # the next run on the full log disk fails with the reason recorded, one line on stderr
    write_dag(env, "small", 'steps:\n  - command: "true"\n')
    code, out, err = run_cli("start", "-q", "small", env=env)
    assert code == 1
    line = _one_clear_line(err)
    row = run_row(env, "small")
    assert row is not None and row["status"] == 2, row  # failed
    assert str(row["log_file"]) in line and ENOSPC in line, line
    assert f"cannot write the run log {row['log_file']}: " in str(row["error"]), row
    assert _error_totals(env).get("errors.disk_full", 0) >= 2  # dagloop_disk_full_total
    # a run the controller launches records its failure too; the controller stays up
    code, out, err = run_cli("enqueue", "small", env=env)
    assert code == 0, err
    queued = out.strip()
    wait_until(
        lambda: query(env, "SELECT status FROM runs WHERE run_id=?", (queued,)) == [(2,)], 20
    )
    assert ctl.poll() is None
    statuses = [r[0] for r in query(env, "SELECT status FROM runs")]
    assert all(s in (2, 3, 4, 6) for s in statuses), statuses
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=20) == 0
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_22_disk_full_during_a_state_write_leaves_no_running_row(
    fenv: dict[str, str], data_disk: Path
) -> None:
    env = fenv
    write_dag(env, "ok", 'steps:\n  - command: "true"\n')
    assert run_cli("start", "-q", "ok", env=env)[0] == 0
    filler = _fill(data_disk)
    db = data_disk / "dagloop.db"
    for args in (("start", "-q", "ok"), ("enqueue", "ok"), ("status", "ok")):
        code, _out, err = run_cli(*args, env=env)
        assert code != 0, args
        line = _one_clear_line(err)
        assert str(db) in line and ENOSPC in line, line
    filler.unlink()
    statuses = [r[0] for r in query(env, "SELECT status FROM runs")]
    assert statuses == [4], statuses  # nothing half-written, nothing stuck `running`
    assert run_cli("start", "-q", "ok", env=env)[0] == 0  # recovers once space is back
    assert [r[0] for r in query(env, "SELECT status FROM runs")] == [4, 4]
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def _journal(env: dict[str, str], dag: str) -> Path:
    """The runner's journal of refused writes (beside the run's logs, not on the data disk)."""
    (log_file,) = [r[0] for r in query(env, "SELECT log_file FROM runs WHERE dag_name=?", (dag,))]
    return Path(str(log_file)).parent / JOURNAL_FILE


def test_22_a_runner_rides_out_a_full_database_disk_and_writes_once_space_is_back(
    fenv: dict[str, str], data_disk: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A step fills the data disk: the runner's state writes are refused, and it keeps them
    (memory and journal) while its next step runs; space freed, everything is written and
    the run ends succeeded, its steps never killed for the database."""
    env = fenv
    filler, go = data_disk / "filler", home_of(env) / "go"
    write_dag(
        env,
        "mid",
        f"""\
        steps:
          - name: a
            command: sh -c "head -c 2000000 /dev/zero > {filler}; true"
          - name: b
            command: sh -c "while [ ! -e {go} ]; do sleep 0.05; done"
            depends: [a]
        """,
    )
    runner = spawn(env, procs, "start", "-q", "mid")
    wait_until(lambda: query(env, "SELECT log_file FROM runs WHERE log_file <> ''"), timeout=20)
    journal = _journal(env, "mid")
    wait_until(journal.exists, timeout=20)  # a's end refused, kept; b runs
    filler.unlink()
    go.touch()
    assert runner.wait(timeout=30) == 0
    assert [r[0] for r in query(env, "SELECT status FROM runs")] == [4]
    assert [r[0] for r in query(env, "SELECT status FROM steps ORDER BY position")] == [4, 4]
    assert not journal.exists()
    log = (journal.parent / "run.log").read_text()
    assert log.count("buffering writes") == 1 and ENOSPC in log, log
    assert log.count("database reachable again") == 1, log
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_22_a_runner_out_of_buffer_time_exits_with_one_line_and_its_journal_is_applied(
    fenv: dict[str, str], data_disk: Path
) -> None:
    """The disk stays full past `database.runnerBufferSeconds`: one clear line naming the
    reason and the journal, exit 1; the reaper applies the journal once space is back, so
    the run reads as it really ended."""
    env = {**fenv, "DAGU_DATABASE_RUNNER_BUFFER_SECONDS": "1"}
    filler = data_disk / "filler"
    write_dag(
        env,
        "mid",
        f"""\
        steps:
          - name: a
            command: sh -c "head -c 2000000 /dev/zero > {filler}; true"
        """,
    )
    code, _out, err = run_cli("start", "-q", "mid", env=env)
    assert code == 1
    line = _one_clear_line(err)
    journal = _journal(env, "mid")
    assert ENOSPC in line and str(journal) in line, line
    filler.unlink()
    code, out, _err = run_cli("status", "mid", "--reap", env=env)
    assert "succeeded" in out.splitlines()[0], out
    assert [r[0] for r in query(env, "SELECT status FROM runs")] == [4]
    assert not journal.exists()
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


CAP = 1024 * 1024  # the test's settings.max_step_log_bytes (default 50 MiB)


def _marker(dropped: int) -> bytes:
    return (
        f"[dagloop: output truncated after {CAP} bytes; {dropped} more bytes discarded]\n".encode()
    )


def test_24_step_output_is_capped_with_a_truncation_marker(fenv: dict[str, str]) -> None:
    """5 MB on stdout and 3 MB on stderr against a 1 MiB cap: the step runs to its end
    (exit 0: no blocked or refused write), each log keeps its first MiB and one marker line
    with the exact count discarded, the API's tail reads the marker, the next step runs."""
    env = dict(fenv, DAGU_CONTROLLER_MAX_STEP_LOG_BYTES=str(CAP))
    write_dag(
        env,
        "big",
        """\
        steps:
          - name: big
            command: sh -c 'yes 0123456789 | head -c 5000000; yes e | head -c 3000000 >&2'
          - name: after
            command: echo still-here
        """,
    )
    code, out, err = run_cli("start", "--json", "-q", "big", env=env)
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    big, after = doc["nodes"]
    assert big["statusLabel"] == "succeeded" and big["exitCode"] == 0, big
    stdout = Path(big["stdout"]).read_bytes()
    assert stdout == b"0123456789\n" * (CAP // 11) + b"0123456789"[: CAP % 11] + b"\n" + _marker(
        5_000_000 - CAP
    )
    stderr = Path(big["stderr"]).read_bytes()
    assert stderr == b"e\n" * (CAP // 2) + _marker(3_000_000 - CAP)
    page = logfile.read_log(Path(big["stdout"]), tail=1)
    assert page["content"] == _marker(5_000_000 - CAP).decode().rstrip("\n")
    assert after["statusLabel"] == "succeeded"
    assert Path(after["stdout"]).read_bytes() == b"still-here\n"
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_24_repeated_executions_keep_the_capped_log_bounded(fenv: dict[str, str]) -> None:
    """Every repetition appends to the same log: the cap holds across executions, each adds
    at most one marker line, and the disk stays bounded (cap + a few markers)."""
    env = dict(fenv, DAGU_CONTROLLER_MAX_STEP_LOG_BYTES=str(CAP))
    write_dag(
        env,
        "again",
        """\
        steps:
          - name: chatty
            command: head -c 700000 /dev/zero
            repeatPolicy:
              repeat: true
              limit: 4
              intervalSec: 0
        """,
    )
    code, out, err = run_cli("start", "--json", "-q", "again", env=env)
    assert code == 0, err
    node = json.loads(out.strip().splitlines()[-1])["nodes"][0]
    assert node["doneCount"] == 4, node
    data = Path(node["stdout"]).read_bytes()
    # 1st: 700000 kept; 2nd: 348576 kept, 351424 dropped; 3rd and 4th: all dropped
    assert data == b"\0" * CAP + b"\n" + _marker(351_424) + _marker(700_000) * 2
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_24_a_merged_log_is_capped_as_one_file(fenv: dict[str, str]) -> None:
    """logOutput: merged: both streams share the one `.log` and its cap; the bytes discarded
    from either are counted in the markers (one per pipe that lost output)."""
    env = dict(fenv, DAGU_CONTROLLER_MAX_STEP_LOG_BYTES=str(CAP))
    write_dag(
        env,
        "merged",
        """\
        logOutput: merged
        steps:
          - name: big
            command: sh -c 'yes o | head -c 2000000; yes e | head -c 1000000 >&2'
        """,
    )
    code, out, err = run_cli("start", "--json", "-q", "merged", env=env)
    assert code == 0, err
    node = json.loads(out.strip().splitlines()[-1])["nodes"][0]
    assert node["stdout"] == node["stderr"] and node["stdout"].endswith("/big.log"), node
    data = Path(node["stdout"]).read_bytes()
    kept, _, markers = data.partition(b"[dagloop: output truncated")
    assert len(kept) == CAP and set(kept.split(b"\n")) <= {b"o", b"e", b""}
    counts = re.findall(rb"; (\d+) more bytes discarded\]\n", b"[dagloop" + markers)
    assert 1 <= len(counts) <= 2 and sum(int(c) for c in counts) == 3_000_000 - CAP, markers
