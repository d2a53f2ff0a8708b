"""Every example DAG runs with the real engine and ends as its comments promise.

`examples/alerts.yaml` talks to outside services (SMTP, Slack, a health URL) that do not exist
here; it is validated by the loader tests and exercised against local servers in
`tests/integration/test_mail.py` and `test_httpexec.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run_cli

EXAMPLES = REPO_ROOT / "examples"
# Examples that end otherwise than `succeeded`, on purpose.
EXPECTED = {"continue_on": "partially_succeeded"}
OFFLINE = sorted(p.stem for p in EXAMPLES.glob("*.yaml") if p.stem not in ("base", "alerts"))


@pytest.mark.parametrize("name", OFFLINE)
def test_example_runs_to_its_intended_status(name: str, dagu_env: dict[str, str]) -> None:
    env = {
        **dagu_env,
        "DAGU_DAGS_DIR": str(EXAMPLES),
        "DAGU_BASE_CONFIG": str(EXAMPLES / "base.yaml"),
    }
    code, out, err = run_cli("start", "--json", name, env=env, timeout=60)
    details = json.loads(out.strip().splitlines()[-1])
    expected = EXPECTED.get(name, "succeeded")
    assert details["statusLabel"] == expected, (err, details)
    assert code == (0 if expected == "succeeded" else 1)
    assert Path(details["log"]).is_file()
