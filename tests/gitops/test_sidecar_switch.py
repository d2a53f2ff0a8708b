"""A DAGs directory that is a symlink an external git-sync sidecar swaps (a new link renamed
over the old one): every catalog refresh reads one tree, never a mix of two."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from controller.catalog import Catalog

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
