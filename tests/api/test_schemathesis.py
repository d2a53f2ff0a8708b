"""schemathesis (PyPI) against the app through WSGI, driven by the served `openapi.yaml`:
every generated request must get a documented status and a body matching the schema, and no
server error. Skipped when schemathesis is not installed (`pip install schemathesis`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed: pip install schemathesis"
)
from hypothesis import HealthCheck, settings  # noqa: E402

from api.app import PREFIX  # noqa: E402
from tests.api.conftest import NOW, make_client, make_home  # noqa: E402


@pytest.fixture
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from model.status import RunStatus, StepStatus

    home = make_home(tmp_path_factory.mktemp("st"))
    home.record_run(
        "hello",
        "run-1",
        RunStatus.SUCCEEDED,
        created=NOW - 60,
        log_text="a\nb\nc\n",
        steps=[{"name": "greet", "status": StepStatus.SUCCEEDED, "stdout_text": "hi\n"}],
    )
    app = make_client(home).app
    schema = schemathesis.openapi.from_wsgi(PREFIX + "/openapi.yaml", app)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate()


def test_the_document_is_the_served_file() -> None:
    served = Path(__file__).resolve().parents[2] / "api" / "openapi.yaml"
    assert served.is_file()
