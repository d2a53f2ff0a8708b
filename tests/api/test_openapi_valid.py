"""`api/openapi.yaml` is a valid OpenAPI 3 document, as a client generator would check it."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import REPO_ROOT

validator = pytest.importorskip("openapi_spec_validator")


def test_openapi_document_validates() -> None:
    document = yaml.safe_load((REPO_ROOT / "api" / "openapi.yaml").read_text())
    validator.validate(document)  # raises OpenAPIValidationError naming the bad part
