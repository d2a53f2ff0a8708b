"""Path parameters can never reach a file outside the log directories: traversal attempts
are rejected (400/404) before any file is opened, and log files are opened only from paths
recorded in the store."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from api.app import PREFIX
from api.logfile import contained_path
from model.status import RunStatus, StepStatus
from tests.api.conftest import Home, make_client

ATTEMPTS = [
    "..",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "..%252F..%252Fetc",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "a%00b",
    "hello%00",
    "...",
    "hello%2F..%2Fother",
]


@pytest.mark.parametrize("attempt", ATTEMPTS)
@pytest.mark.parametrize(
    "template",
    [
        "/dags/{x}",
        "/dags/{x}/spec",
        "/dags/{x}/dag-runs",
        "/dag-runs/{x}/latest",
        "/dag-runs/{x}/latest/log",
        "/dag-runs/hello/{x}/log",
        "/dag-runs/hello/run-1/steps/{x}/log",
        "/dag-runs/hello/{x}/steps/greet/log",
    ],
)
def test_traversal_attempts_are_refused(
    client: falcon.testing.TestClient, attempt: str, template: str
) -> None:
    got = client.simulate_get(PREFIX + template.replace("{x}", attempt))
    assert got.status_code in (400, 404), got.text
    assert got.json["code"] in ("bad_request", "not_found")
    assert "root:" not in got.text


def test_a_recorded_path_outside_the_log_dir_is_not_served(home: Home, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("top secret\n")
    home.record_run(
        "hello",
        "evil",
        RunStatus.SUCCEEDED,
        created=1_800_000_000.0 - 10,
        steps=[
            {
                "name": "s",
                "status": StepStatus.SUCCEEDED,
                "stdout": str(secret),
                "stderr": str(home.settings.log_dir / ".." / "outside.txt"),
            }
        ],
        log_file="/etc/passwd",
    )
    client = make_client(home)
    for path in (
        "/dag-runs/hello/evil/log",
        "/dag-runs/hello/evil/steps/s/log",
        "/dag-runs/hello/evil/steps/s/log?stream=stderr",
    ):
        got = client.simulate_get(PREFIX + path)
        assert got.status_code == 404, path
        assert "top secret" not in got.text and "root:" not in got.text


def test_a_symlink_out_of_the_log_dir_is_not_followed(home: Home, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("linked secret\n")
    link_dir = home.settings.log_dir / "hello"
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "link.log").symlink_to(target)
    assert contained_path(str(link_dir / "link.log"), [home.settings.log_dir]) is None
    assert contained_path(str(home.settings.log_dir / "x\x00"), [home.settings.log_dir]) is None
    assert contained_path("relative/path.log", [home.settings.log_dir]) is None


def test_step_names_with_spaces_are_looked_up_not_built(home: Home) -> None:
    home.record_run(
        "hello",
        "spaced",
        RunStatus.SUCCEEDED,
        created=1_800_000_000.0 - 5,
        steps=[{"name": "second step", "status": StepStatus.SUCCEEDED, "stdout_text": "ok\n"}],
    )
    got = make_client(home).simulate_get(PREFIX + "/dag-runs/hello/spaced/steps/second%20step/log")
    assert got.status_code == 200 and got.json["content"] == "ok"
