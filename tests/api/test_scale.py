"""The API at scale: run lists are chosen on indexes (never a scan of the runs table), and a
run's details are answered from what was rendered before only while nothing they are made of
has changed."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from controller.store.store import Store
from model.status import RunStatus, StepStatus
from tests.api.conftest import NOW, Home, make_client


def _plans(db: Path, sql: list[str]) -> list[str]:
    """SQLite's query plan lines of each statement (values already bound in the text)."""
    with Store(db, readonly=True) as store:
        return [
            str(row[3])
            for statement in sql
            for row in store._db.execute("EXPLAIN QUERY PLAN " + statement)
        ]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"status": "4"},
        {"name": "hel"},
        {"dagRunId": "run-1"},
        {"fromDate": "0", "page": "2", "perPage": "2"},
    ],
)
def test_run_lists_are_chosen_on_indexes(home: Home, query: dict[str, str]) -> None:
    statements: list[str] = []

    def traced() -> Store:
        store = Store(home.settings.db_path, readonly=True)
        store._db.set_trace_callback(statements.append)
        return store

    from api.app import create_app
    from controller.catalog import Catalog

    app = create_app(
        settings=home.settings,
        store_factory=traced,
        catalog=Catalog(home.settings.dags_dir, home.settings.base_config),
        started_at=NOW,
        clock=lambda: NOW,
    )
    got = falcon.testing.TestClient(app).simulate_get("/api/v2/dag-runs", params=query)
    assert got.status_code == 200
    listing = [s for s in statements if "FROM runs" in s]
    assert len(listing) == 2  # the count and the page
    plans = _plans(home.settings.db_path, listing)
    assert not [p for p in plans if p.startswith("SCAN runs")], plans
    assert any("USING COVERING INDEX" in p or "USING INDEX" in p for p in plans), plans


def test_run_details_follow_every_change_of_the_run_and_its_steps(home: Home) -> None:
    client = make_client(home)
    path = "/api/v2/dag-runs/hello/run-1"
    first = client.simulate_get(path).json["dagRunDetails"]
    assert client.simulate_get(path).json["dagRunDetails"] == first  # answered again

    run = home.store.get_run("hello", "run-1")
    (greet, _second) = [s for s in home.store.list_steps(run.id) if s.kind == "step"]
    home.store.update_step(greet.id, status=StepStatus.FAILED, error="boom")
    nodes = client.simulate_get(path).json["dagRunDetails"]["nodes"]
    assert (nodes[0]["statusLabel"], nodes[0]["error"]) == ("failed", "boom")

    home.store.update_run(run.id, status=RunStatus.FAILED, error="a step failed")
    details = client.simulate_get(path).json["dagRunDetails"]
    assert (details["statusLabel"], details["error"]) == ("failed", "a step failed")


def test_a_running_run_whose_runner_is_gone_reads_as_failed_at_once(home: Home) -> None:
    client = make_client(home)
    path = "/api/v2/dag-runs/hello/run-2"
    assert client.simulate_get(path).json["dagRunDetails"]["statusLabel"] == "running"
    run = home.store.get_run("hello", "run-2")
    # A runner that recorded a heartbeat long ago and no live process: nothing in the
    # step rows changed, only what the run reads as.
    home.store.update_run(run.id, pid=2**22 + 12345, heartbeat_at=NOW - 3600)
    details = client.simulate_get(path).json["dagRunDetails"]
    assert details["statusLabel"] == "failed"
    assert details["nodes"][0]["statusLabel"] == "failed"
