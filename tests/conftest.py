"""Pytest configuration shared by every tier: make `tests.helpers` importable."""

from __future__ import annotations

import sys
from pathlib import Path

# `from tests.helpers import ...` works whether pytest runs from the root or elsewhere.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


import pytest  # noqa: E402

from tests.helpers import dagu_home  # noqa: E402


@pytest.fixture
def dagu_env(tmp_path: Path) -> dict[str, str]:
    """Subprocess environment with an isolated DAGU_HOME under tmp_path (see `dagu_home`)."""
    return dagu_home(tmp_path)
