"""The fork-server (controller/spawn/) with real processes: runners forked from it run
and are recorded, survive the controller's SIGKILL, are reaped (no zombies), a dead fork-server
is replaced at the next launch, an unusable one falls back to spawning, and the claim of a
QUEUED row stays atomic. Prepared runners (forked ahead of a start instant) take the launch of
their DAG with its current spec, and exit, leaving no process, when nothing launches them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.loop.controller import Controller
from controller.spawn.client import Dispatch, ForkServer
from controller.spawn.protocol import start_argv
from controller.spawn.runner_process import runner_env
from controller.store.filters import RunFilter
from controller.store.records import RunRecord
from controller.store.store import Store
from model.config import Settings, load_settings
from model.status import RunStatus
from tests.helpers import run_cli, wait_until

# --------------------------------------------------------------------------- process table


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (index 0 = state, 1 = ppid, 3 = session)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].decode().split()


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children(ppid: int) -> list[int]:
    """Processes whose parent is `ppid` (zombies included)."""
    return [p for p in _pids() if (st := _stat(p)) is not None and int(st[1]) == ppid]


def zombies(ppid: int) -> list[int]:
    """Unreaped children of `ppid`."""
    return [p for p in children(ppid) if (st := _stat(p)) is not None and st[0] == "Z"]


def processes_of(home: Path) -> list[int]:
    """Live processes (not zombies) whose environment has DAGU_HOME=<home>."""
    want = f"DAGU_HOME={home}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        st = _stat(pid)
        if want in env and st is not None and st[0] != "Z":
            found.append(pid)
    return found


def runners_of(server_pid: int) -> list[int]:
    """Live runner children (prepared or launched) of a fork-server."""
    found = []
    for pid in children(server_pid):
        st = _stat(pid)
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if st is not None and st[0] != "Z" and comm == "dagloop-runner":
            found.append(pid)
    return found


def gone(pid: int) -> bool:
    """The process exited (reaped, or a zombie waiting for its reaper)."""
    st = _stat(pid)
    return st is None or st[0] == "Z"


def forkserver_of(controller_pid: int) -> int | None:
    """The fork-server child of a `dagloop scheduler` process."""
    for pid in children(controller_pid):
        try:
            if b"controller.spawn.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def home(dagu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated DAGU_HOME (also in this process's env); after the test no process of it
    may be left: any found is killed, then the test fails."""
    for key in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DAGU_HOME", dagu_env["DAGU_HOME"])
    monkeypatch.setenv("PYTHONPATH", dagu_env["PYTHONPATH"])
    path = Path(dagu_env["DAGU_HOME"])
    yield path

    def gone() -> bool:
        return not processes_of(path)

    try:
        wait_until(gone, 10)
    except TimeoutError:
        left = processes_of(path)
        for pid in left:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"processes left behind: {left}")


@pytest.fixture
def server(home: Path) -> Iterator[tuple[ForkServer, Settings]]:
    settings = load_settings()
    fs = ForkServer(runner_env(settings))
    fs.start()
    yield fs, settings
    fs.close()


def write_dag(home: Path, name: str, text: str) -> Path:
    path = home / "dags" / f"{name}.yaml"
    path.write_text(text)
    return path


def queue_run(store: Store, path: Path, run_id: str) -> RunRecord:
    """A QUEUED row as the controller records it before launching."""
    return store.record_run(
        dag_name=path.stem,
        run_id=run_id,
        status=RunStatus.QUEUED,
        file=str(path),
        spec_yaml=path.read_text(),
    )


def launch(fs: ForkServer, settings: Settings, run: RunRecord, **env: str) -> Dispatch:
    return fs.launch(
        row=run.id,
        argv=start_argv(run.run_id, run.file, None),
        err_path=str(settings.log_dir / run.dag_name / run.run_id / "runner.err"),
        env={**runner_env(settings), **env},
        cwd=os.getcwd(),
    )


def scheduler(home: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, "-m", "controller", "scheduler"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(p)
    return p


# --------------------------------------------------------------------------- tests


def test_forked_runners_run_detached_and_are_recorded(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    out = home / "out"
    path = write_dag(
        home, "probe", f"steps:\n  - command: sh -c 'echo $DAGU_FS_PROBE >> {out}; sleep 0.5'\n"
    )
    with Store(settings.db_path) as store:
        runs = [queue_run(store, path, f"r{i}") for i in range(3)]
        handles = [launch(fs, settings, r, DAGU_FS_PROBE=f"v{i}") for i, r in enumerate(runs)]

        def running() -> list[RunRecord] | None:
            rows = [store.get_run_by_id(r.id) for r in runs]
            return rows if all(r.status == RunStatus.RUNNING and r.pid for r in rows) else None

        rows = wait_until(running, 15)
        assert isinstance(rows, list)
        server_pid = fs.proc.pid if fs.proc is not None else -1
        for row, handle in zip(rows, handles, strict=True):
            st = _stat(row.pid or 0)
            assert st is not None
            # forked by the server, leader of its own session, not of the server's
            assert (handle.pid, int(st[1]), int(st[3])) == (row.pid, server_pid, row.pid)
            assert Path(f"/proc/{row.pid}/comm").read_text().strip() == "dagloop-runner"
        assert [h.wait(15) for h in handles] == [0, 0, 0]
        for r in runs:
            final = store.get_run_by_id(r.id)
            assert final.status == RunStatus.SUCCEEDED
            assert (settings.log_dir / "probe" / r.run_id / "runner.err").is_file()
    # each runner got the environment of its own request
    assert sorted(out.read_text().split()) == ["v0", "v1", "v2"]
    wait_until(lambda: not zombies(server_pid), 5)


def test_second_runner_for_one_row_exits_1(server: tuple[ForkServer, Settings], home: Path) -> None:
    fs, settings = server
    path = write_dag(home, "once", "steps:\n  - command: sleep 0.3\n")
    with Store(settings.db_path) as store:
        run = queue_run(store, path, "only")
        first, second = launch(fs, settings, run), launch(fs, settings, run)
        assert sorted([first.wait(15), second.wait(15)]) == [0, 1]
        assert store.get_run_by_id(run.id).status == RunStatus.SUCCEEDED
        assert len(store.list_runs(RunFilter(dag_name="once"))) == 1


def test_runners_survive_a_sigkilled_controller(
    home: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(home, "slow", "steps:\n  - command: sleep 2\n")
    ctl = scheduler(home, procs)
    server_pid = wait_until(lambda: forkserver_of(ctl.pid), 10)
    assert isinstance(server_pid, int)
    code, out, err = run_cli("enqueue", "slow", env=dict(os.environ))
    assert code == 0, err
    run_id = out.strip()
    db = home / "data" / "dagloop.db"

    def run() -> RunRecord:
        with Store(db) as s:
            return s.get_run("slow", run_id)

    wait_until(lambda: run().status == RunStatus.RUNNING and run().pid, 15)
    runner_pid = run().pid
    assert runner_pid is not None and int((_stat(runner_pid) or ["", "0"])[1]) == server_pid
    ctl.kill()
    ctl.wait()
    # the fork-server follows its controller (EOF / PR_SET_PDEATHSIG) ...
    wait_until(lambda: _stat(server_pid) is None or _stat(server_pid)[0] == "Z", 5)  # type: ignore[index]
    # ... its runner does not: it finishes and records its own final status
    assert run().status == RunStatus.RUNNING
    wait_until(lambda: run().status == RunStatus.SUCCEEDED, 15)


def test_killed_forkserver_is_restarted_at_next_launch(
    home: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    write_dag(home, "quick", "steps:\n  - command: 'true'\n")
    ctl = scheduler(home, procs)
    first = wait_until(lambda: forkserver_of(ctl.pid), 10)
    assert isinstance(first, int)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: _stat(first) is None, 5)  # the controller reaped it (SIGCHLD)
    env = dict(os.environ)
    db = home / "data" / "dagloop.db"
    for _ in range(3):
        code, _, err = run_cli("enqueue", "quick", env=env)
        assert code == 0, err

    def all_done() -> bool:
        with Store(db) as s:
            rs = s.list_runs(RunFilter(dag_name="quick"))
            return len(rs) == 3 and all(r.status == RunStatus.SUCCEEDED for r in rs)

    wait_until(all_done, 20)
    second = forkserver_of(ctl.pid)
    assert second is not None and second != first
    wait_until(lambda: not zombies(second), 5)
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=15) == 0
    wait_until(lambda: _stat(second) is None, 5)  # closed with its controller


def test_unusable_forkserver_falls_back_to_spawning(home: Path) -> None:
    """A fork-server that cannot start (here: an interpreter that exits at once) never loses
    a run: its requests are dropped, relaunched, and after repeated failures spawned."""
    write_dag(home, "fallback", "steps:\n  - command: 'true'\n")
    settings = load_settings()
    c = Controller(settings)
    c.applier.forkserver = ForkServer(runner_env(settings), executable="/bin/false")
    try:
        c.refresh_catalog(force=True)
        code, _, err = run_cli("enqueue", "fallback", env=dict(os.environ))
        assert code == 0, err

        def done() -> bool:
            c.pass_once()
            rs = c.store.list_runs(RunFilter(dag_name="fallback"))
            return len(rs) == 1 and rs[0].status == RunStatus.SUCCEEDED

        wait_until(done, 30, interval=0.05)
        assert c.store.list_runs(RunFilter(dag_name="fallback"))[0].attempt == 1
    finally:
        for p in c.applier.running_children():
            p.wait(timeout=10)
        c.applier.forkserver.close()
        c.store.close()


def test_stop_reaches_a_forked_runner(home: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    write_dag(home, "long", "steps:\n  - command: sleep 30\n")
    ctl = scheduler(home, procs)
    wait_until(lambda: forkserver_of(ctl.pid), 10)
    env = dict(os.environ)
    code, out, err = run_cli("enqueue", "long", env=env)
    assert code == 0, err
    run_id = out.strip()
    db = home / "data" / "dagloop.db"

    def status() -> RunStatus:
        with Store(db) as s:
            return s.get_run("long", run_id).status

    wait_until(lambda: status() == RunStatus.RUNNING, 15)
    code, _, err = run_cli("stop", "long", env=env)
    assert code == 0, err
    wait_until(lambda: status() == RunStatus.ABORTED, 15)
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=15) == 0


# --------------------------------------------------------------------------- prepared runners


def prepare(fs: ForkServer, settings: Settings, path: Path, *, expire_seconds: float) -> int:
    """Prepare a runner for `path` (its current text) and return its pid once forked."""
    fs.prepare(
        [(str(path), path.read_text())],
        env=runner_env(settings),
        cwd=os.getcwd(),
        expire_seconds=expire_seconds,
    )
    server_pid = fs.proc.pid if fs.proc is not None else -1
    pids = wait_until(lambda: runners_of(server_pid), 10)
    assert isinstance(pids, list) and len(pids) == 1
    return pids[0]


def test_launch_is_handed_to_the_prepared_runner(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    out = home / "out"
    path = write_dag(home, "ready", f"steps:\n  - command: sh -c 'echo ran >> {out}'\n")
    prepared = prepare(fs, settings, path, expire_seconds=60)
    # its run's log directory and files are made ahead, then moved in place at the launch
    ahead = settings.log_dir / ".prepared" / str(prepared)
    wait_until(lambda: len(list(ahead.glob("*"))) == 4, 10)
    assert {"runner.err", "run.log"} <= {p.name for p in ahead.iterdir()}
    with Store(settings.db_path) as store:
        run = queue_run(store, path, "r1")
        handle = launch(fs, settings, run)
        assert handle.wait_forked(10) == prepared  # no new fork
        assert handle.wait(15) == 0
        final = store.get_run_by_id(run.id)
        assert (final.status, final.pid) == (RunStatus.SUCCEEDED, prepared)
        run_dir = settings.log_dir / "ready" / "r1"
        assert (run_dir / "runner.err").is_file()
        assert "run finished" in (run_dir / "run.log").read_text()
        (step,) = store.list_steps(run.id)
        assert Path(step.stdout).parent == run_dir and Path(step.stdout).is_file()
    assert not ahead.exists() and list(ahead.parent.iterdir()) == []
    assert out.read_text() == "ran\n"
    # still a detached runner: leader of its own session
    assert runners_of(fs.proc.pid if fs.proc is not None else -1) == []


def test_prepared_runner_runs_the_spec_recorded_for_its_run(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    """The DAG file changed after the runner was prepared: the run's snapshot (the current
    file, as the controller records it) is what runs, not the prepared spec."""
    fs, settings = server
    out = home / "out"
    path = write_dag(home, "edited", f"steps:\n  - command: sh -c 'echo old >> {out}'\n")
    prepared = prepare(fs, settings, path, expire_seconds=60)
    path.write_text(f"steps:\n  - command: sh -c 'echo new >> {out}'\n")
    with Store(settings.db_path) as store:
        run = queue_run(store, path, "r1")
        handle = launch(fs, settings, run)
        assert handle.wait_forked(10) == prepared
        assert handle.wait(15) == 0
        assert store.get_run_by_id(run.id).status == RunStatus.SUCCEEDED
    assert out.read_text() == "new\n"


def test_launch_with_another_environment_forks_a_new_runner(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    out = home / "out"
    path = write_dag(home, "envy", f"steps:\n  - command: sh -c 'echo $DAGU_FS_PROBE >> {out}'\n")
    prepared = prepare(fs, settings, path, expire_seconds=60)
    with Store(settings.db_path) as store:
        run = queue_run(store, path, "r1")
        handle = launch(fs, settings, run, DAGU_FS_PROBE="mine")
        assert handle.wait(15) == 0
        assert handle.pid != prepared
        assert store.get_run_by_id(run.id).status == RunStatus.SUCCEEDED
    assert out.read_text() == "mine\n"
    wait_until(lambda: gone(prepared), 10)  # the mismatched one was closed


def test_unused_prepared_runner_exits_without_a_trace(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    path = write_dag(home, "idle", "steps:\n  - command: 'true'\n")
    prepared = prepare(fs, settings, path, expire_seconds=0.5)
    server_pid = fs.proc.pid if fs.proc is not None else -1
    wait_until(lambda: gone(prepared), 10)
    wait_until(lambda: not zombies(server_pid), 5)  # reaped by the server
    with Store(settings.db_path) as store:
        assert store.list_runs(RunFilter(dag_name="idle")) == []
    assert not (settings.log_dir / "idle").exists()
    assert list((settings.log_dir / ".prepared").iterdir()) == []  # its log dir made ahead
    # the server is still serving: a launch after the expiry forks as usual
    with Store(settings.db_path) as store:
        run = queue_run(store, path, "late")
        handle = launch(fs, settings, run)
        assert handle.wait(15) == 0
        assert handle.pid != prepared


def test_prepared_runners_exit_when_the_forkserver_closes(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    path = write_dag(home, "closing", "steps:\n  - command: 'true'\n")
    prepared = prepare(fs, settings, path, expire_seconds=600)
    fs.close()  # the controller stops
    wait_until(lambda: gone(prepared), 10)
    assert list((settings.log_dir / ".prepared").iterdir()) == []


def test_prepared_runners_exit_when_the_forkserver_is_killed(
    server: tuple[ForkServer, Settings], home: Path
) -> None:
    fs, settings = server
    path = write_dag(home, "orphan", "steps:\n  - command: 'true'\n")
    prepared = prepare(fs, settings, path, expire_seconds=600)
    assert fs.proc is not None
    fs.proc.kill()  # as PR_SET_PDEATHSIG does when the controller is SIGKILLed
    wait_until(lambda: gone(prepared), 10)


def test_controller_prepares_the_next_start_and_launches_into_it(home: Path) -> None:
    """Ahead of the next start instant the loop prepares a runner per DAG starting then;
    at the instant the scheduled run is handed to it, running the file as it is then."""
    out = home / "out"
    path = write_dag(
        home, "on_the_hour", f'schedule: "0 * * * *"\nsteps:\n  - command: echo old >> {out}\n'
    )
    write_dag(home, "later", 'schedule: "7 * * * *"\nsteps:\n  - command: "true"\n')
    settings = load_settings()
    boundary = datetime(2027, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    now = [boundary - 3.0]
    c = Controller(settings, clock=lambda: now[0])
    c.applier.forkserver = ForkServer(runner_env(settings))
    try:
        c.applier.forkserver.start()
        c.refresh_catalog(force=True)
        c.pass_once()
        assert c._sleep_seconds() == pytest.approx(1.0)  # woken 2 s ahead of the instant
        server_pid = c.applier.forkserver.proc.pid if c.applier.forkserver.proc else -1
        assert runners_of(server_pid) == []
        now[0] = boundary - 1.5
        c.pass_once()
        pids = wait_until(lambda: runners_of(server_pid), 10)
        assert isinstance(pids, list) and len(pids) == 1  # not for `later`
        assert c._sleep_seconds() == pytest.approx(1.5)  # prepared: next wake is the instant
        # the start after the instant is found ahead too, only for the DAG starting then
        caches = c.builder._caches
        assert caches["on_the_hour"].start.following == datetime.fromtimestamp(boundary + 3600, UTC)
        assert caches["later"].start.following is None
        path.write_text(f'schedule: "0 * * * *"\nsteps:\n  - command: echo new >> {out}\n')
        c.refresh_catalog(force=True)
        now[0] = boundary + 0.05
        c.pass_once()
        (run,) = c.store.list_runs(RunFilter(dag_name="on_the_hour"))
        assert run.scheduled_at == boundary
        wait_until(lambda: c.store.get_run_by_id(run.id).status == RunStatus.SUCCEEDED, 15)
        assert c.store.get_run_by_id(run.id).pid == pids[0]
        assert out.read_text() == "new\n"
    finally:
        for p in c.applier.running_children():
            p.wait(timeout=10)
        c.applier.forkserver.close()
        c.store.close()
