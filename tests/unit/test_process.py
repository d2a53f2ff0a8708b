"""controller.process: the subreaper that lets a runner skip its escapee scan (real processes,
in a child interpreter: the test process itself must not become a subreaper)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, time
    from controller import process as proc

    assert not proc.reap_adopted()  # no child at all
    assert proc.become_subreaper()
    # the shell leaves a setsid grandchild and exits: the grandchild is adopted by us
    sh = subprocess.Popen(
        ["sh", "-c", "setsid sleep 30 >/dev/null & echo $!"], stdout=subprocess.PIPE
    )
    orphan = int(sh.stdout.readline())
    sh.wait()
    deadline = time.monotonic() + 10
    while os.getpid() != int(open(f"/proc/{orphan}/stat").read().rsplit(")", 1)[1].split()[1]):
        assert time.monotonic() < deadline, "the orphan was not adopted"
        time.sleep(0.01)
    assert proc.reap_adopted()  # a descendant is alive
    os.kill(orphan, signal.SIGKILL)
    while proc.reap_adopted():  # its zombie is ours to reap, then nothing is left
        assert time.monotonic() < deadline, "the adopted orphan was never reaped"
        time.sleep(0.01)
    assert not proc.pid_alive(orphan)
    print("ok")
    """
)


def test_a_subreaper_adopts_and_reaps_an_escapee_and_then_has_no_child() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
