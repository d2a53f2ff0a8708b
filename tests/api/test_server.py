"""A real `dagloop server` process (waitress) on 127.0.0.1: HTTP over a socket, auth, HEAD,
405, raw traversal paths, SIGTERM exit, and a real Prometheus scrape when installed."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveServer, free_port, make_home, start_server, stop_server
from tests.helpers import wait_until


def request(
    server: LiveServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, "/api/v2" + path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_real_server_serves_json_head_and_405(live: LiveServer) -> None:
    with urllib.request.urlopen(live.url + "/dag-runs/hello/latest", timeout=10) as r:
        body = json.load(r)
    assert body["dagRunDetails"]["dagRunId"] == "run-2"
    status, headers, data = request(live, "HEAD", "/dags")
    assert status == 200 and data == b""
    status, headers, data = request(live, "POST", "/dags/hello/start")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(data)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "raw",
    [
        "/dags/../../etc/passwd",
        "/dags/..%2F..%2Fetc%2Fpasswd",
        "/dag-runs/hello/latest/steps/..%2F..%2Fx/log",
        "/dags/%2e%2e/spec",
        "/dags/a%00b",
        "/dag-runs/hello/..%252F/log",
    ],
)
def test_real_server_refuses_raw_traversal(live: LiveServer, raw: str) -> None:
    status, _, data = request(live, "GET", raw)
    assert status in (400, 404)
    assert json.loads(data)["code"] in ("bad_request", "not_found")


def test_real_server_auth_and_sigterm_exit(tmp_path: Path) -> None:
    home = make_home(
        tmp_path, DAGU_AUTH_TOKEN="tkn", DAGU_AUTH_BASIC_USERNAME="u", DAGU_AUTH_BASIC_PASSWORD="p"
    )
    server = start_server(
        home,
        {
            "DAGU_AUTH_TOKEN": "tkn",
            "DAGU_AUTH_BASIC_USERNAME": "u",
            "DAGU_AUTH_BASIC_PASSWORD": "p",
        },
    )
    try:
        status, headers, data = request(server, "GET", "/dags")
        assert status == 401 and headers["www-authenticate"] == 'Basic realm="dagloop"'
        assert json.loads(data)["code"] == "unauthorized"
        assert request(server, "GET", "/health")[0] == 200
        assert request(server, "GET", "/dags", {"Authorization": "Bearer tkn"})[0] == 200
        basic = "Basic " + base64.b64encode(b"u:p").decode()
        assert request(server, "GET", "/metrics", {"Authorization": basic})[0] == 200
    finally:
        server.proc.terminate()
        assert server.proc.wait(timeout=10) == 0
        stop_server(server)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_a_real_prometheus_scrapes_up(live: LiveServer, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dagloop\n"
        "    metrics_path: /api/v2/metrics\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{live.port}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> Any:
            try:
                url = f"http://127.0.0.1:{port}/api/v1/query?query=up"
                with urllib.request.urlopen(url, timeout=2) as r:
                    result = json.load(r)["data"]["result"]
            except OSError:
                return False
            return result and result[0]["value"][1] == "1"

        assert wait_until(up, timeout=30, interval=0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
