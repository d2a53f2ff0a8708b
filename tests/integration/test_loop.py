"""The control loop in-process with an injected clock, real SQLite, real DAG files and real
runner processes (`dagloop start --run-id`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.loop.controller import Controller
from controller.store.filters import RunFilter
from controller.store.records import RunRecord
from model.config import load_settings
from model.status import RunStatus
from tests.helpers import dagu_home, wait_until

T0 = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC).timestamp()


class Clock:
    """A settable clock for the controller (real time is used only for waits)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = dagu_home(tmp_path)
    for k in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DAGU_HOME", env["DAGU_HOME"])
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    return Path(env["DAGU_HOME"])


@pytest.fixture
def ctl(home: Path) -> Iterator[tuple[Controller, Clock]]:
    clock = Clock()
    c = Controller(load_settings(), clock=clock)
    yield c, clock
    for p in c.applier.running_children():  # never leave runners behind
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    c.store.close()


def write(home: Path, name: str, text: str) -> Path:
    path = home / "dags" / f"{name}.yaml"
    path.write_text(text)
    return path


def runs(c: Controller, dag: str | None = None) -> list[RunRecord]:
    return c.store.list_runs(RunFilter(dag_name=dag))


def settle(c: Controller, dag: str, count: int, timeout: float = 15.0) -> list[RunRecord]:
    """Pass the loop until `count` runs of `dag` are final."""

    def done() -> list[RunRecord] | None:
        c.pass_once()
        rs = runs(c, dag)
        return rs if len(rs) >= count and all(r.status.is_final() for r in rs) else None

    return wait_until(done, timeout, interval=0.05)  # type: ignore[return-value]


def test_scheduled_dag_fires_once_per_tick(ctl: tuple[Controller, Clock], home: Path) -> None:
    c, clock = ctl
    write(home, "every", 'schedule: "* * * * *"\nsteps:\n  - command: echo hi\n')
    c.refresh_catalog(force=True)
    first = c.pass_once()
    assert [type(a).__name__ for a in first] == ["Launch"]
    (r,) = settle(c, "every", 1)
    assert r.status == RunStatus.SUCCEEDED and r.trigger == "schedule"
    assert r.scheduled_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert c.pass_once() == []  # converged: the tick is not repeated
    # a second controller (restart) does not launch the tick again
    again = Controller(c.settings, clock=clock)
    again.refresh_catalog(force=True)
    assert again.pass_once() == []
    clock.t += 60
    settle(c, "every", 2)
    assert len(runs(c, "every")) == 2


def test_added_edited_and_removed_files_are_picked_up(
    ctl: tuple[Controller, Clock], home: Path
) -> None:
    c, _ = ctl
    c.refresh_catalog(force=True)
    assert c.pass_once() == []
    path = write(home, "late", 'schedule: "30 12 * * *"\nsteps:\n  - command: "true"\n')
    c.bell.ring(catalog=True)
    c.pass_once()
    snap = c.snapshot()
    assert snap.desired.dags["late"].next_start_at == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    path.write_text('schedule: "5 12 * * *"\nsteps:\n  - command: "true"\n')
    os.utime(path, ns=(1, 1))  # a different mtime even within the same clock tick
    c.bell.ring(catalog=True)
    c.pass_once()
    assert c.snapshot().desired.dags["late"].next_start_at == datetime(
        2026, 1, 1, 12, 5, tzinfo=UTC
    )
    bad = write(home, "bad", "steps: [")
    c.bell.ring(catalog=True)
    actions = c.pass_once()
    assert [type(a).__name__ for a in actions] == ["RecordInvalid"]
    assert c.pass_once() == []  # reported once
    bad.unlink()
    path.unlink()
    c.bell.ring(catalog=True)
    c.pass_once()
    assert c.snapshot().desired.dags == {}


def test_queue_limit_holds_for_20_enqueued_runs(ctl: tuple[Controller, Clock], home: Path) -> None:
    import subprocess
    import sys

    c, _ = ctl
    write(home, "q", "maxActiveRuns: 2\nsteps:\n  - command: sleep 0.3\n")
    c.refresh_catalog(force=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "controller", "enqueue", "q"],
            stdout=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        for _ in range(20)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    peak = 0

    def done() -> bool:
        nonlocal peak
        c.pass_once()
        rs = runs(c, "q")
        peak = max(peak, sum(r.status == RunStatus.RUNNING for r in rs))
        return all(r.status.is_final() for r in rs)

    wait_until(done, 60, interval=0.02)
    rs = runs(c, "q")
    assert len(rs) == 20 and all(r.status == RunStatus.SUCCEEDED for r in rs)
    # no three runs overlapped in time (from the recorded start/finish instants)
    spans = sorted((r.started_at or 0, r.finished_at or 0) for r in rs)
    for start, _ in spans:
        assert sum(s <= start < f for s, f in spans) <= 2
    assert 1 <= peak <= 2


def test_killed_runner_is_marked_lost_without_orphans(
    ctl: tuple[Controller, Clock], home: Path
) -> None:
    c, _ = ctl
    write(home, "long", "steps:\n  - command: sleep 60\n")
    c.refresh_catalog(force=True)
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "controller", "enqueue", "long"], check=True, env=dict(os.environ)
    )
    c.pass_once()
    run = wait_until(
        lambda: next((r for r in runs(c, "long") if r.status == RunStatus.RUNNING and r.pid), None),
        15,
    )
    assert isinstance(run, RunRecord)

    def step_pids() -> list[int]:
        want = f"DAG_RUN_ID={run.run_id}".encode()
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if want in Path(f"/proc/{d}/environ").read_bytes().split(b"\0"):
                        out.append(int(d))
                except OSError:
                    pass
        return out

    wait_until(step_pids, 10)
    assert run.pid is not None
    os.kill(run.pid, signal.SIGKILL)

    def lost() -> bool:
        c.pass_once()
        return c.store.get_run_by_id(run.id).status == RunStatus.FAILED

    wait_until(lost, 5)
    assert c.store.get_run_by_id(run.id).error.startswith("lost:")
    wait_until(lambda: not step_pids(), 5)


def test_dequeue_and_removed_dag_abort_queued_runs(
    ctl: tuple[Controller, Clock], home: Path
) -> None:
    import subprocess
    import sys

    c, _ = ctl
    path = write(home, "w", "steps:\n  - command: sleep 30\n")
    c.refresh_catalog(force=True)
    env = dict(os.environ)
    ids = [
        subprocess.run(
            [sys.executable, "-m", "controller", "enqueue", "w"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        for _ in range(3)
    ]
    c.pass_once()  # the first starts, two wait
    out = subprocess.run(
        [sys.executable, "-m", "controller", "dequeue", "w", "--run-id", ids[1]], env=env
    )
    assert out.returncode == 0
    assert c.store.get_run("w", ids[1]).status == RunStatus.ABORTED
    path.unlink()
    c.bell.ring(catalog=True)
    c.pass_once()
    assert c.store.get_run("w", ids[2]).status == RunStatus.ABORTED
    assert "DAG file removed" in c.store.get_run("w", ids[2]).error
    # the running run of the removed DAG keeps running
    assert c.store.get_run("w", ids[0]).status in (RunStatus.QUEUED, RunStatus.RUNNING)


@pytest.mark.parametrize(("days", "kept"), [(0, 0), (-1, 2), (30, 2)])
def test_retention(ctl: tuple[Controller, Clock], home: Path, days: int, kept: int) -> None:
    import subprocess
    import sys

    c, clock = ctl
    write(home, "r", f"histRetentionDays: {days}\nsteps:\n  - command: echo x\n")
    c.refresh_catalog(force=True)
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-m", "controller", "enqueue", "r"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=dict(os.environ),
        )

    def finished() -> bool:
        c.pass_once()
        rs = runs(c, "r")
        return not rs or all(r.status.is_final() for r in rs)

    wait_until(finished, 20)
    clock.t = time.time() + 1  # runners stamp real time; retention compares with the clock
    c.pass_once()
    assert len(runs(c, "r")) == kept
    log_dir = home / "logs" / "r"
    assert len(list(log_dir.iterdir()) if log_dir.exists() else []) == kept


def test_catch_up_window_replays_missed_ticks_once(
    ctl: tuple[Controller, Clock], home: Path
) -> None:
    c, clock = ctl
    write(
        home,
        "cu",
        'schedule: "*/10 * * * *"\ncatchupWindowSec: 1800\noverlapPolicy: all\n'
        'maxActiveRuns: 3\nsteps:\n  - command: "true"\n',
    )
    c.refresh_catalog(force=True)
    clock.t = datetime(2026, 1, 1, 12, 25, tzinfo=UTC).timestamp()
    settle(c, "cu", 3)
    got = sorted(r.scheduled_at or 0 for r in runs(c, "cu"))
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert got == [(base + timedelta(minutes=m)).timestamp() for m in (0, 10, 20)]
    assert c.pass_once() == []
