"""A DAGs directory that is a symlink an external git-sync sidecar swaps (a new link renamed
over the old one): every catalog refresh reads one tree, never a mix of two."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from controller.catalog import Catalog
from tests.helpers import wait_until

FILES = ("a", "b", "c", "d")


def tree(root: Path, marker: str) -> Path:
    root.mkdir(parents=True)
    for name in FILES:
        (root / f"{name}.yaml").write_text(
            f"description: {marker}\nsteps:\n  - name: s\n    command: 'echo {marker}'\n"
        )
    return root


def swap(link: Path, target: Path) -> None:
    """What git-sync does: a new symlink beside the old one, renamed over it."""
    tmp = link.with_name(".tmp-link")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def test_catalog_never_sees_a_half_switched_tree(tmp_path: Path) -> None:
    one = tree(tmp_path / "worktrees" / "one", "one")
    two = tree(tmp_path / "worktrees" / "two", "two")
    link = tmp_path / "dags"
    os.symlink(one, link)
    catalog = Catalog(link)
    stop = threading.Event()

    def sidecar() -> None:
        flip = False
        while not stop.is_set():
            swap(link, two if flip else one)
            flip = not flip

    thread = threading.Thread(target=sidecar)
    thread.start()
    try:
        seen: set[str] = set()
        for _ in range(300):
            catalog.refresh()
            markers = {e.dag.spec.description for e in catalog.entries() if e.dag is not None}
            assert len(markers) == 1, markers  # one tree per refresh
            assert len(catalog.entries()) == len(FILES)
            seen |= markers
    finally:
        stop.set()
        thread.join()
    assert seen == {"one", "two"}  # the swaps did happen under the refreshes
    catalog.refresh()
    entry = catalog.get("a")
    assert entry is not None and entry.path == link / "a.yaml"  # the path callers use
    assert entry.real_path == Path(os.path.realpath(link)) / "a.yaml"


def test_running_controller_picks_up_a_sidecar_swap_at_once(
    tmp_path: Path, dagu_env: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    # git-sync's layout: `--root /git --link current`, the DAGs in the repository's `dags/`
    one = tree(tmp_path / "git" / ".worktrees" / "one" / "dags", "one").parent
    two = tree(tmp_path / "git" / ".worktrees" / "two" / "dags", "two").parent
    (two / "dags" / "broken.yaml").write_text("steps: [\n")
    link = tmp_path / "git" / "current"
    os.symlink(one, link)
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "scheduler"],
            env={**dagu_env, "DAGU_DAGS_DIR": str(link / "dags")},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    procs.append(proc)
    wait_until(lambda: "controller active" in log.read_text(), 20.0)
    swap(link, two)
    # The watcher on the link's directory rings at once (the safety-net rescan is 30 s away).
    wait_until(lambda: "broken.yaml" in log.read_text(), 20.0)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
