"""The `http` executor against a real HTTP server on 127.0.0.1 (http.server in a thread).

Covers both step forms (seed `executor.config.url` and Dagu `command: METHOD URL`), `${VAR}`
expansion, Dagu's output shapes, failures (non-2xx, timeout, refused), and the seed's Slack
and PagerDuty handler examples taken verbatim from the ops guide.
"""

from __future__ import annotations

import io
import json
import socket
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.engine.executors.http import run_http_step, split_method_url
from model.loader import load_dag_text

SEED = Path(__file__).resolve().parents[1] / "data" / "seed_webhooks.md"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers by path."""

    url: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            rec = state["r"]
            rec.requests.append(
                Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            if parts.path == "/slow":
                rec.release.wait(10)
            if parts.path == "/fail":
                self._answer(503, b'{"error":"down"}', "application/json")
            elif parts.path == "/notjson":
                self._answer(200, b"plain text", "text/plain")
            else:
                payload = {"ok": True, "method": self.command, "path": parts.path}
                self._answer(200, json.dumps(payload).encode(), "application/json")

        def _answer(self, code: int, data: bytes, ctype: str) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("X-Test", "yes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout test)
                pass

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    state["r"] = rec
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def expander(values: dict[str, str]) -> Callable[[str], str]:
    return lambda text: string.Template(text).safe_substitute(values)


def run(
    *,
    command: list[str] | None = None,
    config: dict[str, Any],
    values: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run_http_step(
        command=command or [],
        config=config,
        expand=expander(values or {}),
        stdout=out,
        stderr=err,
        timeout_seconds=timeout,
    )
    return code, out.getvalue(), err.getvalue()


def test_split_method_url_forms() -> None:
    assert split_method_url(["POST https://x/y"]) == ("POST", "https://x/y")
    assert split_method_url(["get", "https://x"]) == ("get", "https://x")
    assert split_method_url(["https://x"]) == ("", "https://x")
    assert split_method_url([]) == ("", "")


def test_seed_form_post_expands_url_headers_query_and_body(receiver: Receiver) -> None:
    values = {"BASE": receiver.url, "TOKEN": "t0k3n", "DAG_NAME": "etl", "DAG_RUN_ID": "r1"}
    code, out, err = run(
        config={
            "url": "${BASE}/hook",
            "method": "post",
            "headers": {"Authorization": "Bearer ${TOKEN}", "X-Num": 7},
            "query": {"dag": "${DAG_NAME}", "n": 2},
            "body": '{"run": "${DAG_RUN_ID}"}',
            "silent": True,
        },
        values=values,
    )
    assert code == 0, err
    [req] = receiver.requests
    assert req.method == "POST"
    assert req.path == "/hook"
    assert req.query == {"dag": ["etl"], "n": ["2"]}
    assert req.headers["authorization"] == "Bearer t0k3n"
    assert req.headers["x-num"] == "7"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body) == {"run": "r1"}
    # silent: stdout is exactly the response body
    assert json.loads(out) == {"ok": True, "method": "POST", "path": "/hook"}


def test_dagu_form_get_prints_status_line_and_headers_unless_silent(receiver: Receiver) -> None:
    code, out, err = run(command=[f"GET {receiver.url}/thing?a=1"], config={})
    assert code == 0, err
    text = out.decode()
    assert text.startswith("200 OK\n")
    assert "Content-Type: application/json\r\n" in text
    assert "X-Test: yes\r\n" in text
    assert text.endswith('{"ok": true, "method": "GET", "path": "/thing"}')
    assert receiver.requests[0].query == {"a": ["1"]}


def test_command_is_expanded_and_method_defaults_to_get(receiver: Receiver) -> None:
    code, out, _ = run(
        command=["${BASE}/x"], config={"silent": "true"}, values={"BASE": receiver.url}
    )
    assert code == 0
    assert receiver.requests[0].method == "GET"
    assert json.loads(out)["path"] == "/x"


def test_json_output_has_status_headers_and_parsed_body(receiver: Receiver) -> None:
    code, out, _ = run(command=["PUT", f"{receiver.url}/j"], config={"json": True})
    assert code == 0
    result = json.loads(out)
    assert result["status_code"] == 200
    assert result["headers"]["X-Test"] == ["yes"]
    assert result["body"] == {"ok": True, "method": "PUT", "path": "/j"}


def test_json_output_of_a_non_json_body_fails(receiver: Receiver) -> None:
    code, _, err = run(command=[f"GET {receiver.url}/notjson"], config={"json": True})
    assert code == 1
    assert b"not JSON" in err


def test_non_2xx_fails_with_the_status_code(receiver: Receiver) -> None:
    code, out, err = run(command=[f"POST {receiver.url}/fail"], config={"silent": True})
    assert code == 1
    assert b"http status code not 2xx: 503" in err
    # Even silent, a failure shows the status line (as Dagu) and the body is still captured.
    assert out.startswith(b"503 Service Unavailable\n")
    assert out.endswith(b'{"error":"down"}')


def test_config_timeout_fails_the_step(receiver: Receiver) -> None:
    code, _, err = run(command=[f"GET {receiver.url}/slow"], config={"timeout": 0.3})
    assert code == 1
    assert b"timeout after 0.3 s" in err


def test_step_timeout_bounds_the_request(receiver: Receiver) -> None:
    code, _, err = run(command=[f"GET {receiver.url}/slow"], config={}, timeout=0.3)
    assert code == 1
    assert b"timeout after 0.3 s" in err


def test_connection_refused_fails_the_step() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run(command=[f"GET http://127.0.0.1:{port}/"], config={})
    assert code == 1
    assert out == b""
    assert b"http: GET" in err


def test_missing_url_and_bad_timeout_are_reported() -> None:
    assert run(config={"method": "GET"})[0] == 1
    code, _, err = run(command=["GET http://127.0.0.1:9/"], config={"timeout": "soon"})
    assert code == 1
    assert b"invalid timeout" in err


def _seed_block(marker: str) -> str:
    """The YAML block following `marker` in the seed's Alerting section, verbatim."""
    text = SEED.read_text(encoding="utf-8")
    start = text.index("```yaml\n", text.index(marker)) + len("```yaml\n")
    return text[start : text.index("```", start)]


def test_seed_slack_handler_works_verbatim(receiver: Receiver) -> None:
    yaml_text = _seed_block("**Slack:**")
    dag = load_dag_text("name: slack\n" + yaml_text + "steps:\n  - echo hi\n", file="slack.yaml")
    step = dag.spec.handler_on.failure
    assert step is not None and step.executor is not None and step.executor.type == "http"
    values = {
        "SLACK_WEBHOOK_URL": f"{receiver.url}/services/T000/B000/XXX",
        "DAG_NAME": "nightly-etl",
        "DAG_RUN_ID": "0193-abc",
    }
    code, _, err = run(command=step.command, config=step.executor.config, values=values)
    assert code == 0, err
    [req] = receiver.requests
    assert (req.method, req.path) == ("POST", "/services/T000/B000/XXX")
    assert req.headers["content-type"] == "application/json"
    payload = json.loads(req.body)
    assert payload["text"] == "Workflow Failed: nightly-etl"
    assert payload["blocks"][0]["text"]["text"] == "*Run ID:* 0193-abc"


def test_seed_pagerduty_handler_works_verbatim(receiver: Receiver) -> None:
    yaml_text = _seed_block("**PagerDuty:**")
    # The local server stands in for PagerDuty: only the host part of the URL changes.
    yaml_text = yaml_text.replace("https://events.pagerduty.com", receiver.url)
    dag = load_dag_text("name: pd\n" + yaml_text + "steps:\n  - echo hi\n", file="pd.yaml")
    step = dag.spec.handler_on.failure
    assert step is not None and step.executor is not None
    values = {"PAGERDUTY_KEY": "R0UT1NG", "DAG_NAME": "nightly-etl"}
    code, _, err = run(command=step.command, config=step.executor.config, values=values)
    assert code == 0, err
    [req] = receiver.requests
    # No method in the seed's example: a request with a body is a POST.
    assert (req.method, req.path) == ("POST", "/v2/enqueue")
    payload = json.loads(req.body)
    assert payload == {
        "routing_key": "R0UT1NG",
        "event_action": "trigger",
        "payload": {"summary": "Failed: nightly-etl", "severity": "error"},
    }


def test_example_alerts_dag_slack_handler_posts_json(receiver: Receiver) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "alerts.yaml"
    dag = load_dag_text(example.read_text(encoding="utf-8"), file=str(example))
    step = dag.spec.handler_on.failure
    assert step is not None and step.executor is not None
    values = {"SLACK_WEBHOOK_URL": receiver.url + "/slack", "DAG_NAME": "alerts"}
    code, _, err = run(command=step.command, config=step.executor.config, values=values)
    assert code == 0, err
    assert json.loads(receiver.requests[0].body)["text"] == "Workflow Failed: alerts"
