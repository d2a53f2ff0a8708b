"""GET /api/v2/workers and GET /api/v2/dags/search in Dagu's shapes (`WorkersListResponse`,
`SearchResultItem`), through falcon's test client and a real `dagloop server`."""

from __future__ import annotations

import json
import urllib.request

import falcon.testing

from model.status import RunStatus
from tests.api.conftest import NOW, Home, LiveServer, make_client


def _worker(home: Home, worker_id: str, *, heartbeat_at: float, status: str = "active") -> None:
    home.store.record_worker(
        id=worker_id,
        host="node-1",
        pid=4242,
        labels={"gpu": "yes"},
        max_active_runs=4,
        status=status,
        started_at=heartbeat_at - 100,
        now=heartbeat_at,
    )


def test_workers_with_their_running_runs_and_health(home: Home) -> None:
    _worker(home, "w-fresh", heartbeat_at=NOW - 1)
    _worker(home, "w-late", heartbeat_at=NOW - 8)
    _worker(home, "w-dead", heartbeat_at=NOW - 600)
    _worker(home, "w-gone", heartbeat_at=NOW - 1, status="stopped")
    run = home.record_run("other", "on-w", RunStatus.RUNNING, created=NOW - 30)
    home.store.update_run(run.id, worker_id="w-fresh")
    queued = home.record_run("other", "claimed", RunStatus.QUEUED, created=NOW - 20)
    home.store.update_run(queued.id, worker_id="w-fresh")

    body = make_client(home).simulate_get("/api/v2/workers").json
    assert body["errors"] == []
    by_id = {w["id"]: w for w in body["workers"]}
    assert set(by_id) == {"w-fresh", "w-late", "w-dead"}
    fresh = by_id["w-fresh"]
    assert fresh["labels"] == {"gpu": "yes"} and fresh["host"] == "node-1"
    assert fresh["totalPollers"] == 4 and fresh["busyPollers"] == 1
    assert fresh["lastHeartbeatAt"] == "2027-01-15T07:59:59Z"
    assert fresh["runningTasks"] == [
        {
            "dagRunId": "on-w",
            "dagName": "other",
            "startedAt": "2027-01-15T07:59:31Z",
            "rootDagRunName": "other",
            "rootDagRunId": "on-w",
        }
    ]
    health = {w: by_id[w]["healthStatus"] for w in by_id}
    assert health == {"w-fresh": "healthy", "w-late": "warning", "w-dead": "unhealthy"}


def test_no_workers_is_an_empty_list(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/api/v2/workers").json == {"workers": [], "errors": []}


def test_search_finds_the_files_and_lines_holding_the_text(
    client: falcon.testing.TestClient,
) -> None:
    body = client.simulate_get("/api/v2/dags/search", params={"q": "ECHO"}).json
    assert body["errors"] == []
    (hello,) = body["results"]
    assert hello["name"] == "hello" and hello["dag"]["name"] == "hello"
    assert hello["dag"]["runConfig"] == {"disableParamEdit": False, "disableRunIdEdit": False}
    # hello.yaml: line 10 `command: echo ${GREETING} ${NAME}`, 12 `command: echo done`,
    # 15 `command: echo bye` (the last line); two lines of context each side, as Dagu.
    assert [(m["lineNumber"], m["startLine"]) for m in hello["matches"]] == [
        (10, 8),
        (12, 10),
        (15, 13),
    ]
    assert hello["matches"][2]["line"] == "handlerOn:\n  exit:\n    command: echo bye"


def test_search_reaches_files_that_did_not_load_and_text_is_not_a_pattern(
    client: falcon.testing.TestClient,
) -> None:
    body = client.simulate_get("/api/v2/dags/search", params={"q": "steps: ["}).json
    assert [r["name"] for r in body["results"]] == ["broken"]
    assert body["results"][0]["matches"] == [{"line": "steps: [", "lineNumber": 1, "startLine": 1}]
    nothing = client.simulate_get("/api/v2/dags/search", params={"q": "(a+)+$"}).json
    assert nothing == {"results": [], "errors": []}


def test_search_without_q_is_a_400_and_empty_q_matches_nothing(
    client: falcon.testing.TestClient,
) -> None:
    missing = client.simulate_get("/api/v2/dags/search")
    assert missing.status_code == 400 and missing.json["code"] == "bad_request"
    empty = client.simulate_get("/api/v2/dags/search", params={"q": ""})
    assert empty.status_code == 200 and empty.json == {"results": [], "errors": []}


def test_workers_and_search_over_http(live: LiveServer) -> None:
    _worker(live.home, "w-http", heartbeat_at=NOW)
    with urllib.request.urlopen(live.url + "/workers", timeout=10) as r:
        workers = json.load(r)["workers"]
    assert [w["id"] for w in workers] == ["w-http"]
    with urllib.request.urlopen(live.url + "/dags/search?q=bye", timeout=10) as r:
        results = json.load(r)["results"]
    assert [(r["name"], r["matches"][0]["lineNumber"]) for r in results] == [("hello", 15)]
