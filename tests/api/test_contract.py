"""Dagu's OpenAPI document (v1.30.2) as the contract of the parameters we serve: a value it
allows never gets a 400, a value it forbids gets a 400 with the JSON error body; `runConfig`
carries its two required booleans; run lists come a page at a time."""

from __future__ import annotations

import falcon.testing
import pytest

from model.status import RunStatus
from tests.api.conftest import NOW, Home, make_client


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v2/dag-runs", {"toDate": "-5"}),
        ("/api/v2/dag-runs", {"fromDate": "-9223372036854775808"}),
        ("/api/v2/dag-runs", {"fromDate": "0", "toDate": "9223372036854775807"}),
        ("/api/v2/dag-runs", {"page": "99999999999999999999999"}),
        ("/api/v2/dag-runs/h\u00e9llo wörld", {}),
        ("/api/v2/dags", {"perPage": "1000"}),
        ("/api/v2/dag-runs/hello/run-1/log", {"tail": "20000"}),
        ("/api/v2/dag-runs/hello/run-1/log", {"head": "123456789012345678901234567890"}),
    ],
)
def test_a_query_the_spec_allows_is_never_a_400(
    client: falcon.testing.TestClient, path: str, query: dict[str, str]
) -> None:
    got = client.simulate_get(path, params=query)
    assert got.status_code == 200, got.text


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v2/dag-runs", {"dagRunId": "a.b"}),
        ("/api/v2/dag-runs", {"dagRunId": ""}),
        ("/api/v2/dag-runs/hello", {"dagRunId": "x/y"}),
        ("/api/v2/dag-runs", {"fromDate": "9223372036854775808"}),
        ("/api/v2/dag-runs", {"toDate": "-9223372036854775809"}),
        ("/api/v2/dag-runs", {"fromDate": "1_000"}),
        ("/api/v2/dag-runs", {"status": "9"}),
        ("/api/v2/dag-runs", {"perPage": "1001"}),
        ("/api/v2/dag-runs/hello/run-1/log", {"limit": "10001"}),
        ("/api/v2/dag-runs/hello/run.1", {}),
    ],
)
def test_a_query_the_spec_forbids_is_a_400_with_a_json_body(
    client: falcon.testing.TestClient, path: str, query: dict[str, str]
) -> None:
    got = client.simulate_get(path, params=query)
    assert got.status_code == 400, got.text
    assert got.json["code"] == "bad_request" and got.json["message"]


def test_run_config_always_has_both_booleans(client: falcon.testing.TestClient) -> None:
    listed = client.simulate_get("/api/v2/dags").json["dags"]
    detail = client.simulate_get("/api/v2/dags/hello").json["dag"]
    for config in [d["dag"]["runConfig"] for d in listed] + [detail["runConfig"]]:
        assert config == {"disableParamEdit": False, "disableRunIdEdit": False}


def test_run_config_set_in_the_file_is_served(home: Home) -> None:
    (home.root / "dags" / "locked.yaml").write_text(
        "runConfig: {disableParamEdit: true}\nsteps:\n  - command: 'true'\n"
    )
    got = make_client(home).simulate_get("/api/v2/dags/locked").json["dag"]["runConfig"]
    assert got == {"disableParamEdit": True, "disableRunIdEdit": False}


def test_run_lists_come_a_page_at_a_time(home: Home) -> None:
    for i in range(7):
        home.record_run("other", f"o{i}", RunStatus.SUCCEEDED, created=NOW - 600 + i)
    client = make_client(home)
    query = {"perPage": "3", "fromDate": str(int(NOW - 3600))}
    first = client.simulate_get("/api/v2/dag-runs/other", params=query).json
    assert [r["dagRunId"] for r in first["dagRuns"]] == ["o6", "o5", "o4"]
    assert first["pagination"] == {
        "currentPage": 1,
        "nextPage": 2,
        "prevPage": 1,
        "totalPages": 3,
        "totalRecords": 7,
    }
    last = client.simulate_get("/api/v2/dag-runs/other", params={**query, "page": "3"}).json
    assert [r["dagRunId"] for r in last["dagRuns"]] == ["o0"]
    past = client.simulate_get("/api/v2/dag-runs", params={**query, "page": "9"}).json
    assert past["dagRuns"] == [] and past["pagination"]["totalRecords"] == 7


def test_run_list_default_page_is_100_runs(home: Home) -> None:
    for i in range(105):
        home.record_run("other", f"p{i:03d}", RunStatus.SUCCEEDED, created=NOW - 600 + i)
    body = make_client(home).simulate_get("/api/v2/dag-runs/other").json
    assert len(body["dagRuns"]) == 100 and body["dagRuns"][0]["dagRunId"] == "p104"
    assert body["pagination"]["totalRecords"] == 105
