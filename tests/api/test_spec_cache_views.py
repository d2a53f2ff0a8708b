"""The API over spec-cache hits (light objects, no pydantic) answers exactly as over DAGs the
loader validated: every DAG view of the examples and the compat DAGs, and the plan."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import falcon.testing

from api.app import PREFIX, create_app
from controller.catalog import Catalog, spec_cache_dir
from controller.store.store import Store
from model.config import Settings, load_settings
from model.speccache import LightDag
from tests.helpers import REPO_ROOT


def _client(settings: Settings, *, cache: bool) -> tuple[falcon.testing.TestClient, Catalog]:
    catalog = Catalog(
        settings.dags_dir,
        settings.base_config,
        settings.max_dag_file_bytes,
        cache_dir=spec_cache_dir(settings) if cache else None,
    )
    app = create_app(
        settings=settings,
        store_factory=lambda: Store(settings.db_path, readonly=True),
        catalog=catalog,
        started_at=0.0,
        clock=lambda: 1_800_000_000.0,
    )
    return falcon.testing.TestClient(app), catalog


def _body(result: falcon.testing.Result) -> Any:
    doc = result.json if result.status_code == 200 else result.text
    if isinstance(doc, dict):
        doc.pop("now", None)  # the plan's evaluation instant
    return (result.status_code, doc)


def test_light_dags_serve_the_same_json(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    sources = [
        *(REPO_ROOT / "examples").glob("*.yaml"),
        *(REPO_ROOT / "tests/compat/dags").glob("*.yaml"),
    ]
    for src in sources:
        if src.name != "base.yaml":
            shutil.copy(src, dags / src.name)
    settings = load_settings(env={"DAGU_HOME": str(tmp_path)})
    Store(settings.db_path).close()
    validated, _ = _client(settings, cache=False)
    warm, _ = _client(settings, cache=True)  # misses: validates and writes the cache
    assert warm.simulate_get(PREFIX + "/dags").status_code == 200
    light, catalog = _client(settings, cache=True)
    assert light.simulate_get(PREFIX + "/dags").status_code == 200
    loaded = [e for e in catalog.entries() if e.dag is not None]
    assert len(loaded) > 20 and all(isinstance(e.dag, LightDag) for e in loaded)
    paths = [PREFIX + "/dags?perPage=100", PREFIX + "/dags/tags", PREFIX + "/plan"]
    for e in catalog.entries():
        paths += [f"{PREFIX}/dags/{e.file_name}", f"{PREFIX}/dags/{e.file_name}/spec"]
    for path in paths:
        assert _body(light.simulate_get(path)) == _body(validated.simulate_get(path)), path
