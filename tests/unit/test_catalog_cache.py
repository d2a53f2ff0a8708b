"""The catalog's use of the spec cache (controller.catalog with `cache_dir`): hits come back as
light objects without the loader, every edit of the DAG or base.yaml is a miss, invalid files are
still reported, and a cache directory that cannot be written never fails a load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.catalog import Catalog
from model.speccache import LightDag
from tests.helpers import REPO_ROOT


def _catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "dags", tmp_path / "base.yaml", cache_dir=tmp_path / "cache")


@pytest.fixture
def dags(tmp_path: Path) -> Path:
    d = tmp_path / "dags"
    d.mkdir()
    (d / "a.yaml").write_text('schedule: "5 * * * *"\nsteps:\n  - command: echo a\n')
    (d / "bad.yaml").write_text("steps:\n  - depends: [nope]\n    command: x\n")
    return d


def test_second_catalog_reads_hits_as_light_dags(tmp_path: Path, dags: Path) -> None:
    first = _catalog(tmp_path)
    first.refresh()
    a = first.get("a")
    assert a is not None and a.dag is not None and not isinstance(a.dag, LightDag)
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == 1  # only the valid file
    second = _catalog(tmp_path)
    second.refresh()
    hit = second.get("a")
    assert hit is not None and isinstance(hit.dag, LightDag)
    assert hit.dag.spec.schedule.start == a.dag.spec.schedule.start
    assert hit.dag.name == "a" and hit.dag.queue == "a"
    bad = second.get("bad")
    assert bad is not None and bad.dag is None and bad.errors


def test_edits_of_the_file_and_of_base_yaml_are_misses(tmp_path: Path, dags: Path) -> None:
    _catalog(tmp_path).refresh()
    (dags / "a.yaml").write_text('schedule: "7 * * * *"\nsteps:\n  - command: echo a\n')
    c = _catalog(tmp_path)
    c.refresh()
    entry = c.get("a")
    assert entry is not None and entry.dag is not None
    assert entry.dag.spec.schedule.start == ["7 * * * *"]
    (tmp_path / "base.yaml").write_text("histRetentionDays: 3\n")
    assert c.refresh()
    entry = c.get("a")
    assert entry is not None and entry.dag is not None
    assert entry.dag.spec.hist_retention_days == 3
    (tmp_path / "base.yaml").write_text("histRetentionDays: [oops]\n")
    c.refresh()
    entry = c.get("a")
    assert entry is not None and entry.dag is None and entry.errors  # base errors, not a hit


def test_unwritable_cache_dir_only_costs_time(tmp_path: Path, dags: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the directory should be")
    c = _catalog(tmp_path)
    c.refresh()
    entry = c.get("a")
    assert entry is not None and entry.dag is not None


def test_plan_on_hits_imports_neither_pydantic_nor_yaml(tmp_path: Path, dags: Path) -> None:
    (dags / "bad.yaml").unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env.update(DAGU_HOME=str(tmp_path), DAGU_DAGS_DIR=str(dags), PYTHONPATH=str(REPO_ROOT))
    code = (
        "import sys\nfrom controller import cli\nrc = cli.main(['plan', '--json'])\n"
        "print('MODULES', 'pydantic' in sys.modules, 'yaml' in sys.modules, file=sys.stderr)\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 and '"a"' in r.stdout for r in runs), runs
    assert "MODULES True" in runs[0].stderr  # the first plan validated and cached the DAG
    assert "MODULES False False" in runs[1].stderr
