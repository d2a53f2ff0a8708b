"""The spec cache (`model.speccache`): hits equal fresh loads, edits invalidate, junk is ignored,
and the light classes keep the methods of the pydantic models they stand in for."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from model import spec as spec_module
from model import speccache
from model.loader import Dag, DagLoadError, load_base, load_dag

CORPUS = sorted((Path(__file__).resolve().parents[1] / "compat" / "dags").glob("*.yaml"))


def _load(path: Path, base: Path | None, cache_dir: Path) -> Any:
    return speccache.load(
        path,
        base_config=base,
        cache_dir=cache_dir,
        loader=lambda: load_dag(path, base=load_base(base)),
    )


def _plain(value: Any) -> Any:
    """Real and light objects as comparable plain data (class name + fields)."""
    if isinstance(value, BaseModel | speccache.LightSpec):
        return (type(value).__name__, {k: _plain(v) for k, v in vars(value).items()})
    if isinstance(value, Dag | speccache.LightDag):
        return (
            "Dag",
            {k: _plain(v) for k, v in vars(value).items()},
        )
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / speccache.CACHE_SUBDIR).glob("*.pickle"))


def test_miss_stores_and_hit_returns_light_dag(tmp_path: Path) -> None:
    dag_file = tmp_path / "one.yaml"
    dag_file.write_text('steps:\n  - command: "echo hi"\n')
    first = _load(dag_file, None, tmp_path / "data")
    assert isinstance(first, Dag)  # a miss returns the loader's value
    assert len(_entries(tmp_path / "data")) == 1
    second = _load(dag_file, None, tmp_path / "data")
    assert isinstance(second, speccache.LightDag)
    assert _plain(second) == _plain(first)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_cached_corpus_equals_fresh_load(path: Path, tmp_path: Path) -> None:
    try:
        fresh = load_dag(path)
    except DagLoadError:
        pytest.skip("invalid on purpose")
    speccache.write_entry(tmp_path / "e.pickle", fresh)
    light = speccache.read_entry(tmp_path / "e.pickle")
    assert light is not None
    assert _plain(light) == _plain(fresh)
    # The methods the run engine calls give the same answers on both.
    for dag_real, dag_light in [(fresh, light), *zip_locals(fresh, light)]:
        assert dag_light.queue == dag_real.queue
        assert dag_light.file_name == dag_real.file_name
        assert dag_light.working_dir() == dag_real.working_dir()
        assert [e for e, _ in dag_light.spec.handler_on.items()] == [
            e for e, _ in dag_real.spec.handler_on.items()
        ]
        for real, lite in zip(dag_real.spec.steps, dag_light.spec.steps, strict=True):
            assert lite.executor_type == real.executor_type
            assert dag_light.step(real.name).name == real.name
            copy = lite.model_copy(update={"name": "x"})
            assert copy.name == "x" and lite.name == real.name


def zip_locals(real: Dag, light: Any) -> list[tuple[Dag, Any]]:
    """Pairs of (real, light) sub-DAG documents of one file."""
    return [(real.local_dags[k], light.local_dags[k]) for k in real.local_dags]


def test_dag_file_change_is_a_miss(tmp_path: Path) -> None:
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text('steps:\n  - command: "echo one"\n')
    _load(dag_file, None, tmp_path / "data")
    _load(dag_file, None, tmp_path / "data")
    dag_file.write_text('steps:\n  - command: "echo two"\n')
    changed = _load(dag_file, None, tmp_path / "data")
    assert changed.spec.steps[0].command == ["echo two"]
    again = _load(dag_file, None, tmp_path / "data")
    assert isinstance(again, speccache.LightDag)
    assert again.spec.steps[0].command == ["echo two"]


def test_base_change_is_a_miss(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("env:\n  - A: one\n")
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text('steps:\n  - command: "true"\n')
    assert ("A", "one") in _load(dag_file, base, tmp_path / "data").spec.env
    assert ("A", "one") in _load(dag_file, base, tmp_path / "data").spec.env
    base.write_text("env:\n  - A: two\n")
    assert ("A", "two") in _load(dag_file, base, tmp_path / "data").spec.env
    base.unlink()
    assert not _load(dag_file, base, tmp_path / "data").spec.env


def test_snapshot_text_and_location_are_part_of_the_key(tmp_path: Path) -> None:
    text = 'steps:\n  - command: "true"\n'
    a, b = tmp_path / "a" / "x.yaml", tmp_path / "b" / "x.yaml"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(text)
        _load(p, None, tmp_path / "data")
    assert len(_entries(tmp_path / "data")) == 2
    assert _load(b, None, tmp_path / "data").location == b


@pytest.mark.parametrize(
    "junk", [b"", b"not a pickle", b"\x80\x05\x95garbage", b"cos\nsystem\n(S'true'\ntR."]
)
def test_corrupt_or_foreign_entry_is_ignored_and_rewritten(tmp_path: Path, junk: bytes) -> None:
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text('steps:\n  - command: "echo ok"\n')
    _load(dag_file, None, tmp_path / "data")
    (entry,) = _entries(tmp_path / "data")
    entry.write_bytes(junk)
    value = _load(dag_file, None, tmp_path / "data")
    assert isinstance(value, Dag) and value.spec.steps[0].command == ["echo ok"]
    assert isinstance(speccache.read_entry(entry), speccache.LightDag)


def test_invalid_file_is_never_cached(tmp_path: Path) -> None:
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text("steps: 3\n")
    for _ in range(2):
        with pytest.raises(DagLoadError):
            _load(dag_file, None, tmp_path / "data")
    assert _entries(tmp_path / "data") == []


def test_unwritable_cache_dir_still_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the cache directory should be")
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text('steps:\n  - command: "true"\n')
    assert _load(dag_file, None, blocker).spec.steps[0].command == ["true"]


def test_light_classes_have_every_method_of_the_spec_models() -> None:
    base_names = set(dir(BaseModel))
    for name, cls in vars(spec_module).items():
        if not (
            inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == "model.spec"
        ):
            continue
        own = {
            attr
            for klass in cls.__mro__
            if klass.__module__ == "model.spec"
            for attr, value in vars(klass).items()
            if not attr.startswith("_")
            and attr not in base_names
            and (callable(value) or isinstance(value, property))
            and not isinstance(value, classmethod | staticmethod)
        }
        light = speccache.light_class(name)
        assert {a for a in own if not hasattr(light, a)} == set(), name
    dag_methods = {
        a
        for a, v in vars(Dag).items()
        if not a.startswith("_") and (callable(v) or isinstance(v, property))
    }
    assert {a for a in dag_methods if not hasattr(speccache.LightDag, a)} == set()
