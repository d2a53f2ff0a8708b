"""SQLite writers queue in the kernel (`<db>-writers`, flock) for their turn at the write lock:
a waiter sleeps past its own busy timeout instead of failing, and a holder that dies (even
SIGKILLed) hands the turn on."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from controller.store.store import Store
from model.status import RunStatus

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_writer_waits_its_turn_and_gets_it_when_the_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "dagloop.db"
    with Store(path) as store:
        run = store.record_run(dag_name="d", run_id="a", status=RunStatus.QUEUED)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, f"{path}-writers"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                # a busy timeout far shorter than the wait: polling alone would fail
                with Store(path, timeout_seconds=0.1) as s:
                    s.update_run(run.id, error="written")
            except BaseException as exc:
                errors.append(exc)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.5)  # still queued behind the holder, not failed
        holder.kill()
        assert done.wait(10)
        writer.join()
        assert errors == []
    finally:
        holder.kill()
        holder.wait()
    with Store(path) as store:
        assert store.get_run_by_id(run.id).error == "written"
