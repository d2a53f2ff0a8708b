"""Every route of the API through falcon.testing: shapes, HEAD, 405, 404/400 errors, and the
OpenAPI document matching the routes exactly."""

from __future__ import annotations

import re

import falcon.testing
import pytest
import yaml

from api.app import PREFIX
from tests.api.conftest import Home, make_client

OK_PATHS = [
    "/health",
    "/metrics",
    "/openapi.yaml",
    "/dags",
    "/dags/tags",
    "/dags/hello",
    "/dags/hello/spec",
    "/dags/hello/dag-runs",
    "/dags/hello/dag-runs/run-1",
    "/dags/hello/dag-runs/latest",
    "/dag-runs",
    "/dag-runs/hello",
    "/dag-runs/hello/run-1",
    "/dag-runs/hello/latest",
    "/dag-runs/hello/run-1/spec",
    "/dag-runs/hello/latest/outputs",
    "/dag-runs/hello/latest/sub-dag-runs",
    "/dag-runs/hello/run-1/log",
    "/dag-runs/hello/run-1/steps/greet/log",
    "/queues",
    "/services/scheduler",
]


@pytest.mark.parametrize("path", OK_PATHS)
def test_every_read_route_answers_200_and_head_has_no_body(
    client: falcon.testing.TestClient, path: str
) -> None:
    got = client.simulate_get(PREFIX + path)
    assert got.status_code == 200, got.text
    head = client.simulate_head(PREFIX + path)
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/dags", "/dags/hello/start", "/dag-runs/hello/run-1", "/health"])
def test_writes_answer_405_with_allow_and_json(
    client: falcon.testing.TestClient, method: str, path: str
) -> None:
    got = client.simulate_request(method, PREFIX + path)
    assert got.status_code == 405
    assert got.headers["allow"] == "GET, HEAD"
    assert got.json["code"] == "method_not_allowed"


def test_health_shape(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get(PREFIX + "/health").json
    assert body == {
        "status": "healthy",
        "version": body["version"],
        "uptime": 42,
        "timestamp": "2027-01-15T08:00:00Z",
    }


def test_dag_list_items_pagination_and_errors(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get(PREFIX + "/dags", params={"perPage": 2}).json
    assert body["errors"] == []
    assert body["pagination"] == {
        "currentPage": 1,
        "nextPage": 2,
        "prevPage": 1,
        "totalPages": 2,
        "totalRecords": 3,
    }
    by_file = {d["fileName"]: d for d in body["dags"]}
    assert list(by_file) == ["broken", "hello"]
    assert by_file["broken"]["errors"] and "invalid YAML" in by_file["broken"]["errors"][0]
    hello = by_file["hello"]
    assert hello["suspended"] is False and hello["errors"] == []
    assert hello["dag"]["schedule"] == [{"expression": "0 3 * * *"}]
    assert hello["dag"]["tags"] == ["demo", "greeting"]
    assert hello["dag"]["params"] == ["NAME=world"]
    assert hello["nextRun"] == "2027-01-16T03:00:00Z" or hello["nextRun"].startswith("2027-01-1")
    assert hello["latestDAGRun"]["dagRunId"] == "run-2"
    assert hello["latestDAGRun"]["statusLabel"] == "running"
    page2 = client.simulate_get(PREFIX + "/dags", params={"perPage": 2, "page": 2}).json
    assert [d["fileName"] for d in page2["dags"]] == ["other"]
    assert page2["pagination"]["nextPage"] == 2 and page2["pagination"]["prevPage"] == 1


def test_dag_list_filters_and_sorting(client: falcon.testing.TestClient) -> None:
    def names(**params: str) -> list[str]:
        return [
            d["fileName"] for d in client.simulate_get(PREFIX + "/dags", params=params).json["dags"]
        ]

    assert names(name="HEL") == ["hello"]
    assert names(tag="ops") == ["other"]
    assert names(tag="Greeting") == ["hello"]
    assert names(order="desc") == ["other", "hello", "broken"]
    # */5 fires before 03:00 tomorrow; unscheduled (broken) last
    assert names(sort="nextRun") == ["other", "hello", "broken"]


@pytest.mark.parametrize(
    "query",
    [
        {"perPage": "1001"},
        {"perPage": "0"},
        {"page": "0"},
        {"page": "x"},
        {"sort": "size"},
        {"order": "up"},
    ],
)
def test_dag_list_bad_parameters_are_400(
    client: falcon.testing.TestClient, query: dict[str, str]
) -> None:
    got = client.simulate_get(PREFIX + "/dags", params=query)
    assert got.status_code == 400
    assert got.json["code"] == "bad_request"


def test_dag_details_masks_secret_env_and_has_latest_run(
    client: falcon.testing.TestClient,
) -> None:
    body = client.simulate_get(PREFIX + "/dags/hello").json
    assert body["suspended"] is False and body["localDags"] == [] and body["errors"] == []
    assert body["dag"]["env"] == ["GREETING=hello", "API_TOKEN=*****"]
    assert "tok-in-env-123" not in client.simulate_get(PREFIX + "/dags/hello").text
    assert [s["name"] for s in body["dag"]["steps"]] == ["greet", "second step"]
    assert body["dag"]["handlerOn"]["exit"]["command"] == "echo"
    assert body["latestDAGRun"]["dagRunId"] == "run-2"
    assert body["latestDAGRun"]["nodes"][0]["step"]["name"] == "greet"


def test_spec_returns_the_file_text_and_errors(
    client: falcon.testing.TestClient, home: Home
) -> None:
    body = client.simulate_get(PREFIX + "/dags/hello/spec").json
    assert body == {"spec": (home.settings.dags_dir / "hello.yaml").read_text(), "errors": []}
    broken = client.simulate_get(PREFIX + "/dags/broken/spec").json
    assert broken["spec"] == "steps: [\n" and broken["errors"]


def test_dag_run_history_and_grid(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get(PREFIX + "/dags/hello/dag-runs").json
    assert [r["dagRunId"] for r in body["dagRuns"]] == ["run-2", "run-1", "run-old"]
    grid = {g["name"]: g["history"] for g in body["gridData"]}
    assert grid == {"greet": [0, 4, 1], "second step": [0, 4, 0]}
    one = client.simulate_get(PREFIX + "/dags/hello/dag-runs/latest").json
    assert one["dagRun"]["dagRunId"] == "run-2"


def test_dag_runs_default_window_is_today_utc(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get(PREFIX + "/dag-runs").json
    assert [r["dagRunId"] for r in body["dagRuns"]] == ["run-2", "run-1"]
    everything = client.simulate_get(PREFIX + "/dag-runs", params={"fromDate": "0"}).json
    assert [r["dagRunId"] for r in everything["dagRuns"]] == ["run-2", "run-1", "run-old"]


def test_dag_runs_filters(client: falcon.testing.TestClient) -> None:
    def ids(path: str = "/dag-runs", **params: str) -> list[str]:
        got = client.simulate_get(PREFIX + path, params={"fromDate": "0", **params})
        return [r["dagRunId"] for r in got.json["dagRuns"]]

    assert ids(status="4") == ["run-1"]
    assert ids(name="ell") == ["run-2", "run-1", "run-old"]
    assert ids(name="zzz") == []
    assert ids(dagRunId="run-1") == ["run-1"]
    assert ids(toDate=str(1_800_000_000 - 8 * 3600)) == ["run-old"]
    assert ids("/dag-runs/hello", status="2") == ["run-old"]
    assert ids("/dag-runs/hell") == []
    assert client.simulate_get(PREFIX + "/dag-runs", params={"status": "9"}).status_code == 400


def test_run_details_shape_and_latest(client: falcon.testing.TestClient) -> None:
    d = client.simulate_get(PREFIX + "/dag-runs/hello/run-1").json["dagRunDetails"]
    for key in ("dagRunId", "name", "status", "statusLabel", "startedAt", "finishedAt", "nodes"):
        assert key in d
    assert d["statusLabel"] == "succeeded" and d["status"] == 4
    assert [n["step"]["name"] for n in d["nodes"]] == ["greet", "second step"]
    assert d["nodes"][0]["exitCode"] == 0
    latest = client.simulate_get(PREFIX + "/dag-runs/hello/latest").json["dagRunDetails"]
    assert latest["dagRunId"] == "run-2" and latest["statusLabel"] == "running"


def test_outputs_spec_and_sub_runs(client: falcon.testing.TestClient, home: Home) -> None:
    out = client.simulate_get(PREFIX + "/dag-runs/hello/run-1/outputs").json
    assert out["metadata"]["dagRunId"] == "run-1"
    assert out["outputs"] == {"result": "42"}
    spec = client.simulate_get(PREFIX + "/dag-runs/hello/run-1/spec").json
    assert spec["spec"].startswith("description: says hello")
    assert client.simulate_get(PREFIX + "/dag-runs/hello/run-1/sub-dag-runs").json == {
        "subRuns": []
    }
    home.store.record_run(
        dag_name="child",
        run_id="c1",
        status=home.store.get_run("hello", "run-1").status,
        parent_dag="hello",
        parent_run_id="run-1",
    )
    subs = client.simulate_get(PREFIX + "/dag-runs/hello/run-1/sub-dag-runs").json["subRuns"]
    assert [(s["name"], s["dagRunId"]) for s in subs] == [("child", "c1")]


@pytest.mark.parametrize(
    "path",
    [
        "/dags/nope",
        "/dags/nope/spec",
        "/dags/nope/dag-runs",
        "/dags/hello/dag-runs/nope",
        "/dag-runs/hello/nope",
        "/dag-runs/nope/latest",
        "/dag-runs/hello/nope/log",
        "/dag-runs/hello/run-1/steps/nope/log",
        "/dag-runs/hello/run-2/log",
        "/dag-runs/hello/latest/outputs/x",
        "/nothing-here",
    ],
)
def test_unknown_things_are_json_404(client: falcon.testing.TestClient, path: str) -> None:
    got = client.simulate_get(PREFIX + path)
    assert got.status_code == 404
    assert got.json["code"] == "not_found" and got.json["message"]


def test_queues_list_running_and_queued_runs(home: Home) -> None:
    from model.status import RunStatus

    home.store.record_run(dag_name="other", run_id="q1", status=RunStatus.QUEUED, now=1)
    body = make_client(home).simulate_get(PREFIX + "/queues").json
    queues = {q["name"]: q for q in body["queues"]}
    assert queues["hello"]["type"] == "dag-based"
    assert [r["dagRunId"] for r in queues["hello"]["running"]] == ["run-2"]
    assert [r["dagRunId"] for r in queues["other"]["queued"]] == ["q1"]
    assert body["summary"] == {
        "totalQueues": 2,
        "totalRunning": 1,
        "totalQueued": 1,
        "totalCapacity": 2,
        "utilizationPercentage": 50.0,
    }


def test_scheduler_instances_active_only_with_fresh_heartbeat(home: Home) -> None:
    now = 1_800_000_000.0
    home.store.record_instance(
        id="a", host="h1", pid=1, status="active", started_at=now - 60, now=now - 1
    )
    home.store.record_instance(
        id="b", host="h2", pid=2, status="active", started_at=now - 120, now=now - 3600
    )
    body = make_client(home).simulate_get(PREFIX + "/services/scheduler").json
    assert body == {
        "schedulers": [
            {
                "instanceId": "a",
                "host": "h1",
                "status": "active",
                "startedAt": "2027-01-15T07:59:00Z",
            },
            {
                "instanceId": "b",
                "host": "h2",
                "status": "inactive",
                "startedAt": "2027-01-15T07:58:00Z",
            },
        ]
    }


def test_plan_is_the_document_of_dagloop_plan_json(client: falcon.testing.TestClient) -> None:
    got = client.simulate_get(PREFIX + "/plan")
    assert got.status_code == 200
    assert set(got.json) == {"now", "actions", "queued", "running", "invalid", "schedules"}
    assert all(isinstance(got.json[k], list) for k in got.json if k != "now")


def test_openapi_document_lists_exactly_the_served_routes(
    client: falcon.testing.TestClient,
) -> None:
    doc = yaml.safe_load(client.simulate_get(PREFIX + "/openapi.yaml").text)
    documented = {PREFIX + p for p in doc["paths"]}
    served = set()

    def walk(nodes: list) -> None:  # type: ignore[type-arg]
        for node in nodes:
            if node.resource is not None and node.uri_template.startswith(PREFIX):
                served.add(node.uri_template)
            walk(node.children or [])

    walk(client.app._router._roots)
    assert served == documented
    for path, item in doc["paths"].items():
        assert set(item) == {"get"}, path
        params = re.findall(r"{(\w+)}", path)
        declared = {
            p.get("name") or p["$ref"].rsplit("/", 1)[1] for p in item["get"].get("parameters", [])
        }
        for name in params:
            assert (
                name in declared
                or name[0].upper() + name[1:] in declared
                or (name == "fileName" and "FileName" in declared)
                or (name == "dagRunId" and "DAGRunId" in declared)
            ), (path, name)


def test_an_unexpected_exception_is_a_json_500(home: Home) -> None:
    client = make_client(home)
    home.store._db.execute("DROP TABLE run_totals")  # break the metrics query only
    got = client.simulate_get(PREFIX + "/metrics")
    assert got.status_code == 500
    assert got.json == {"code": "internal_error", "message": "internal error; see the server log"}
