"""/api/v2/metrics: the seed's names, honest types, a counter that survives history pruning,
a duration histogram, and `promtool check metrics` when promtool is installed."""

from __future__ import annotations

import shutil
import subprocess

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import PREFIX, create_app
from controller.catalog import Catalog
from controller.store.store import Store
from model.status import RunStatus
from tests.api.conftest import NOW, Home, make_client

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(home: Home) -> Samples:
    return parse(make_client(home).simulate_get(PREFIX + "/metrics").text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_seed_metric_names_and_values(home: Home) -> None:
    got = scrape(home)
    assert got["dagu_info"][(("version", "0.1.0"),)] == 1
    assert got["dagu_uptime_seconds"][()] == 42
    assert got["dagu_scheduler_running"][()] == 0
    assert got["dagu_dags_total"][()] == 3
    assert got["dagu_dag_runs_currently_running"][()] == 1
    assert got["dagu_dag_runs_queued_total"][()] == 0
    totals = got["dagu_dag_runs_total"]
    assert totals[(("status", "succeeded"),)] == 1
    assert totals[(("status", "failed"),)] == 1
    assert totals[(("status", "aborted"),)] == 0
    assert "process_resident_memory_bytes" in got and "python_info" in got


def test_runs_total_is_monotonic_when_history_is_pruned(home: Home) -> None:
    before = scrape(home)["dagu_dag_runs_total"][(("status", "succeeded"),)]
    run = home.store.get_run("hello", "run-1")
    home.store.delete_run(run.id)
    assert scrape(home)["dagu_dag_runs_total"][(("status", "succeeded"),)] == before
    running = home.store.get_run("hello", "run-2")
    home.store.update_run(
        running.id, status=RunStatus.SUCCEEDED, finished_at=running.started_at + 7
    )
    after = scrape(home)
    assert after["dagu_dag_runs_total"][(("status", "succeeded"),)] == before + 1
    assert after["dagu_dag_runs_currently_running"][()] == 0


def test_duration_histogram_by_dag(home: Home) -> None:
    got = scrape(home)
    buckets = got["dagu_dag_run_duration_seconds_bucket"]
    # run-old and run-1 each took 2 s
    assert buckets[(("dag", "hello"), ("le", "1.0"))] == 0
    assert buckets[(("dag", "hello"), ("le", "5.0"))] == 2
    assert buckets[(("dag", "hello"), ("le", "+Inf"))] == 2
    assert got["dagu_dag_run_duration_seconds_sum"][(("dag", "hello"),)] == 4
    assert got["dagu_dag_run_duration_seconds_count"][(("dag", "hello"),)] == 2


def test_scheduler_running_from_fresh_active_instance(home: Home) -> None:
    now = 1_800_000_000.0
    home.store.record_instance(
        id="x", host="h", pid=1, status="active", started_at=now - 9, now=now - 1
    )
    assert scrape(home)["dagu_scheduler_running"][()] == 1


def test_queued_gauge(home: Home) -> None:
    home.store.record_run(dag_name="other", run_id="q1", status=RunStatus.QUEUED)
    home.store.record_run(dag_name="other", run_id="q2", status=RunStatus.QUEUED)
    assert scrape(home)["dagu_dag_runs_queued_total"][()] == 2


def test_cached_history_follows_finished_runs_and_uptime_stays_live(home: Home) -> None:
    now = [NOW]
    app = create_app(
        settings=home.settings,
        store_factory=lambda: Store(home.settings.db_path, readonly=True),
        catalog=Catalog(home.settings.dags_dir, home.settings.base_config),
        started_at=NOW - 42,
        clock=lambda: now[0],
    )
    client = falcon.testing.TestClient(app)

    def get() -> Samples:
        return parse(client.simulate_get(PREFIX + "/metrics").text)

    first = get()
    now[0] += 10
    again = get()  # the history text comes from the cache; the gauges do not
    assert again["dagu_uptime_seconds"][()] == 52
    hello = (("dag", "hello"),)
    assert again["dagu_dag_run_duration_seconds_count"][hello] == 2
    running = home.store.get_run("hello", "run-2")
    assert running.started_at is not None
    home.store.update_run(
        running.id, status=RunStatus.SUCCEEDED, finished_at=running.started_at + 7
    )
    after = get()
    succeeded = (("status", "succeeded"),)
    assert after["dagu_dag_runs_total"][succeeded] == first["dagu_dag_runs_total"][succeeded] + 1
    assert after["dagu_dag_run_duration_seconds_count"][hello] == 3
    assert after["dagu_dag_run_duration_seconds_bucket"][(*hello, ("le", "15.0"))] == 3


def test_missed_runs_counter_from_the_stores_skipped_ticks(home: Home) -> None:
    assert "dagloop_missed_runs_total" not in scrape(home)
    home.store.record_skipped_ticks("hello", [NOW - 120, NOW - 60], reason="down", now=NOW)
    home.store.record_skipped_ticks("hello", [NOW - 60], reason="again", now=NOW)  # once
    home.store.record_skipped_ticks("other", [NOW], reason="overlap", now=NOW)
    got = scrape(home)["dagloop_missed_runs_total"]
    assert got == {(("dag", "hello"),): 2, (("dag", "other"),): 1}


def test_disk_full_counter_from_the_stores_error_totals(home: Home) -> None:
    assert scrape(home)["dagloop_disk_full_total"] == {(): 0}
    home.store.record_error("disk_full")
    home.store.record_error("disk_full")
    assert scrape(home)["dagloop_disk_full_total"] == {(): 2}


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_finds_nothing_but_the_seed_mandated_gauge_names(home: Home) -> None:
    text = make_client(home).simulate_get(PREFIX + "/metrics").text
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    allowed = ("dagu_dags_total", "dagu_dag_runs_queued_total")
    unexpected = [f for f in findings if not f.startswith(allowed)]
    assert unexpected == [], findings
