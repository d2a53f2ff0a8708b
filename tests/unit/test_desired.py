"""The desired-state builder's reuse (controller.reconcile.desired): an idle pass returns the
previous DAG
map, and a builder that reuses agrees with a fresh builder at every minute of a walk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.catalog import Catalog
from controller.reconcile.desired import DesiredBuilder
from model.config import Settings, load_settings

T0 = datetime(2026, 3, 28, 23, 0, 20, tzinfo=UTC)  # the night before Berlin's spring forward

DAGS = {
    "every": 'schedule: "* * * * *"\nsteps:\n  - command: "true"\n',
    "five": 'schedule: "*/5 * * * *"\ncatchupWindowSec: 300\nsteps:\n  - command: "true"\n',
    "berlin": 'schedule: "CRON_TZ=Europe/Berlin 30 2 * * *"\nsteps:\n  - command: "true"\n',
    "stops": (
        'schedule:\n  start: "0 * * * *"\n  stop: "10 * * * *"\n  restart: "20 * * * *"\n'
        'skipIfSuccessful: true\nsteps:\n  - command: "true"\n'
    ),
    "manual": 'steps:\n  - command: "true"\n',
}


def _setup(tmp_path: Path) -> tuple[Settings, Catalog]:
    dags = tmp_path / "dags"
    dags.mkdir()
    for name, text in DAGS.items():
        (dags / f"{name}.yaml").write_text(text)
    settings = load_settings(env={"DAGU_HOME": str(tmp_path), "DAGU_TZ": "UTC"})
    catalog = Catalog(settings.dags_dir, settings.base_config)
    catalog.refresh()
    return settings, catalog


def test_idle_passes_reuse_the_dag_map_until_a_tick_is_due(tmp_path: Path) -> None:
    settings, catalog = _setup(tmp_path)
    builder = DesiredBuilder(settings, catalog)
    first = builder.build(T0)
    again = builder.build(T0 + timedelta(seconds=30))
    assert again.dags is first.dags  # nothing became due: no DagDesired was rebuilt
    due = builder.build(T0 + timedelta(seconds=41))  # 23:01:01, "every" fired at 23:01
    assert due.dags is not first.dags
    assert [t.at for t in due.dags["every"].start_ticks] == [T0.replace(minute=1, second=0)]
    assert due.dags["manual"] is first.dags["manual"]  # unchanged DAGs keep their entry
    (tmp_path / "dags" / "manual.yaml").write_text(
        'schedule: "7 * * * *"\nsteps:\n  - command: x\n'
    )
    catalog.refresh()
    changed = builder.build(T0 + timedelta(seconds=42))
    assert changed.dags["manual"].next_start_at == T0.replace(minute=7, second=0)
    assert builder.next_due_at() == T0.replace(minute=2, second=0)


def test_reuse_agrees_with_a_fresh_builder_minute_by_minute(tmp_path: Path) -> None:
    settings, catalog = _setup(tmp_path)
    reusing = DesiredBuilder(settings, catalog)
    now = T0
    for step in range(5 * 60):  # five hours in uneven steps, across the DST night in Berlin
        now += timedelta(seconds=(17, 43, 60, 1, 119)[step % 5])
        got = reusing.build(now)
        fresh = DesiredBuilder(settings, catalog).build(now)
        assert dict(got.dags) == dict(fresh.dags), now
        assert got.invalid == fresh.invalid
