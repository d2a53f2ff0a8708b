"""schemathesis with Dagu 1.30.2's own OpenAPI document against `dagloop server` over HTTP.

The operations are the GET operations of every path that both Dagu's document and ours
(`api/openapi.yaml`) have: for those, a client written against Dagu must get what Dagu's
document promises. A request the document allows never gets a 400; one it forbids gets a 4xx
with the JSON error body; every answer matches the document's schema.

Dagu's document is read out of the Dagu binary (`tests/api/dagu_openapi.py`), so this test
needs it (`$DAGU_PEER_BIN` or the default npm location) and is skipped without it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed: pip install schemathesis"
)
from hypothesis import HealthCheck, settings  # noqa: E402
from waitress.server import create_server  # noqa: E402

from model.status import RunStatus, StepStatus  # noqa: E402
from tests.api import dagu_openapi  # noqa: E402
from tests.api.conftest import NOW, make_client, make_home  # noqa: E402
from tests.compat.harness import find_peer  # noqa: E402
from tests.helpers import REPO_ROOT  # noqa: E402

PEER = find_peer()
pytestmark = pytest.mark.skipif(
    PEER is None,
    reason="Dagu 1.30.2 binary not found (its OpenAPI document is read from it): "
    "set DAGU_PEER_BIN or npm install @dagu-org/dagu-linux-x64@1.30.2 into /tmp/dagu",
)


def our_paths() -> set[str]:
    """The paths `api/openapi.yaml` says we serve."""
    document = yaml.safe_load((REPO_ROOT / "api" / "openapi.yaml").read_text())
    return set(document["paths"])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`create_app` on a populated home, served by waitress on an ephemeral 127.0.0.1 port."""
    home = make_home(tmp_path_factory.mktemp("dagu-contract"))
    home.record_run(
        "hello",
        "run-1",
        RunStatus.SUCCEEDED,
        created=NOW - 60,
        log_text="a\nb\nc\n",
        steps=[{"name": "greet", "status": StepStatus.SUCCEEDED, "stdout_text": "hi\n"}],
    )
    server = create_server(make_client(home).app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}/api/v2"  # type: ignore[union-attr]
    finally:
        server.close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def dagu_schema(base_url: str) -> Any:
    assert PEER is not None
    document = dagu_openapi.restricted(dagu_openapi.extract(PEER), our_paths())
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=base_url)
    return loaded


schema = schemathesis.pytest.from_fixture("dagu_schema")


@pytest.mark.timeout(900)  # one test item for every operation: ~90 s on a busy 2-core host
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_dagus_openapi_document(case: Any) -> None:
    case.call_and_validate()


def test_the_contract_covers_the_paths_we_share_with_dagu() -> None:
    assert PEER is not None
    dagu = dagu_openapi.extract(PEER)
    shared = {p for p in our_paths() if "get" in dagu["paths"].get(p, {})}
    assert {"/dag-runs", "/dag-runs/{name}/{dagRunId}", "/dags", "/health"} <= shared
