"""The web dashboard in a real browser against a real `dagloop server` with real runs.

Runs are made by `dagloop start` on the same isolated DAGU_HOME; the server reads them from
the store like any client. A "live" DAG blocks on a file the test creates, so the running →
succeeded transition happens while the page is open, with no sleeps.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from controller.store.store import Store
from model.config import load_settings
from tests.e2e.conftest import Server, Shots, start_server, stop_process, wait_for
from tests.helpers import REPO_ROOT, wait_until

OK = """\
description: greets, then counts in parallel
tags: [demo, nightly]
schedule: "0 9 * * 1-5"
params: NAME=world
steps:
  - name: greet
    command: echo hello ${NAME}
  - name: count a
    command: echo 1
    depends: greet
  - name: count b
    command: echo 2
    depends: greet
  - name: merge
    command: echo merged
    depends: [count a, count b]
handlerOn:
  exit:
    command: echo bye
"""

FAILS = """\
description: breaks in its second step
tags: [ops]
schedule: "*/15 * * * *"
steps:
  - name: prepare
    command: echo preparing
  - name: explode
    command: >-
      sh -c 'echo about to fail; echo "boom - disk full" >&2; exit 3'
    depends: prepare
  - name: never
    command: echo never
    depends: explode
"""

LIVE = """\
steps:
  - name: wait for go
    command: >-
      sh -c 'while [ ! -e {go} ]; do sleep 0.05; done; echo released'
  - name: after
    command: echo after
    depends: wait for go
"""

CHATTY = """\
steps:
  - name: count
    command: seq 1 500
"""

BROKEN = "steps: [\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`dagloop server` over a home with an ok, a failing, a live and a broken DAG, and a run
    of each of the first two."""
    root = tmp_path_factory.mktemp("dash")
    go = root / "home" / "go"  # inside the DAGU_HOME that start_server makes
    srv = start_server(
        root,
        {
            "ok.yaml": OK,
            "fails.yaml": FAILS,
            "live.yaml": LIVE.format(go=go),
            "chatty.yaml": CHATTY,
            "broken.yaml": BROKEN,
        },
        {},
    )
    try:
        assert srv.dagloop("start", "ok").returncode == 0
        assert srv.dagloop("start", "fails").returncode == 1
        assert srv.dagloop("start", "chatty").returncode == 0
        yield srv
    finally:
        stop_process(srv.proc)


def latest_run_id(server: Server, dag: str) -> str:
    return str(server.get_json(f"/dag-runs/{dag}/latest")["dagRunDetails"]["dagRunId"])


def test_dag_list_shows_statuses_schedules_and_load_errors(
    chrome: Any, server: Server, shots: Shots
) -> None:
    chrome.get(server.base_url + "/#/dags")
    ok_row = wait_for(chrome, 'tr[data-dag="ok"]')
    fails_row = wait_for(chrome, 'tr[data-dag="fails"]')
    assert "succeeded" in ok_row.find_element("css selector", "td:last-child .badge").text
    assert "failed" in fails_row.find_element("css selector", "td:last-child .badge").text
    # The run cells carry their status in words for screen readers.
    cell = fails_row.find_element("css selector", ".cells .cell")
    assert cell.get_attribute("aria-label").startswith("failed")
    assert cell.get_attribute("data-status") == "failed"
    assert "at 09:00 on weekdays" in ok_row.text
    assert "every 15 minutes" in fails_row.text
    banner = wait_for(chrome, "#load-errors")
    assert "broken" in banner.text
    assert "has-error" in wait_for(chrome, 'tr[data-dag="broken"]').get_attribute("class")
    shots.take("dag-list")

    # Filtering by tag leaves only the tagged DAG, without a reload.
    chrome.execute_script("window.__sameDocument = true")
    tag_button = ok_row.find_element("css selector", "button.tag")
    assert tag_button.text == "demo"
    tag_button.click()
    wait_until(lambda: not chrome.find_elements("css selector", 'tr[data-dag="fails"]'))
    assert chrome.find_elements("css selector", 'tr[data-dag="ok"]')
    assert "tag=demo" in chrome.current_url
    assert chrome.execute_script("return window.__sameDocument") is True

    # Sorted by next run, the DAGs without a schedule come last.
    chrome.get(server.base_url + "/#/dags?sort=nextRun")
    wait_for(chrome, 'tr[data-dag="live"]')
    order = [
        r.get_attribute("data-dag") for r in chrome.find_elements("css selector", "tr[data-dag]")
    ]
    assert set(order[:2]) == {"fails", "ok"}
    assert set(order[2:]) == {"broken", "chatty", "live"}


def test_dag_page_draws_the_step_graph_and_run_history(
    chrome: Any, server: Server, shots: Shots
) -> None:
    chrome.get(server.base_url + "/#/dags/ok")
    wait_for(chrome, 'svg.graph g.node[data-step="merge"]')
    steps = {
        el.get_attribute("data-step")
        for el in chrome.find_elements("css selector", "svg.graph g.node:not(.handler)")
    }
    assert steps == {"greet", "count a", "count b", "merge"}
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in chrome.find_elements("css selector", "svg.graph path.edge")
    }
    assert edges == {
        ("greet", "count a"),
        ("greet", "count b"),
        ("count a", "merge"),
        ("count b", "merge"),
    }
    assert chrome.find_elements("css selector", "svg.graph g.node.handler")
    history = wait_for(chrome, "#run-history tbody tr")
    assert "succeeded" in history.text
    assert "NAME=world" in chrome.find_element("css selector", "dl.facts").text
    shots.take("dag-page")


def test_run_page_shows_graph_exit_code_and_failed_stderr(
    chrome: Any, server: Server, shots: Shots
) -> None:
    run_id = latest_run_id(server, "fails")
    chrome.get(f"{server.base_url}/#/runs/fails/{run_id}")
    wait_for(chrome, '#run-status[data-status="failed"]')
    node = wait_for(chrome, 'svg.graph g.node[data-step="explode"]')
    assert node.get_attribute("data-status") == "failed"
    assert (
        chrome.find_element("css selector", 'svg.graph g.node[data-step="prepare"]').get_attribute(
            "data-status"
        )
        == "succeeded"
    )
    row = wait_for(chrome, 'tr[data-step="explode"]')
    assert row.find_element("css selector", "td[data-exit-code]").text == "3"
    # The failed step's stderr is opened by itself and shows the tail of the file.
    stderr = wait_for(
        chrome,
        'tr[data-step="explode"] details[data-stream="stderr"] pre',
        check=lambda el: "boom - disk full" in el.text,
    )
    assert stderr.is_displayed()
    assert chrome.find_elements("css selector", ".gantt .gbar.s-failed")
    shots.take("run-failed")

    # A graph node is a keyboard control: Enter brings its step's row into focus.
    from selenium.webdriver.common.keys import Keys

    chrome.execute_script("arguments[0].focus()", node)
    focused = "var a = document.activeElement; return a.tagName + ' ' + a.dataset.step"
    assert chrome.execute_script(focused) == "g explode"
    node.send_keys(Keys.ENTER)
    wait_until(lambda: chrome.execute_script(focused) == "TR explode")


def test_run_page_shows_its_revision_and_the_diff_to_the_current_file(
    chrome: Any, server: Server, shots: Shots
) -> None:
    path = server.home / "dags" / "ok.yaml"
    before = path.read_text()
    path.write_text(before + "# edited after the run\n")
    try:
        wait_until(lambda: "edited" in server.get_json("/dags/ok/spec")["spec"])
        chrome.get(f"{server.base_url}/#/runs/ok/{latest_run_id(server, 'ok')}")
        wait_for(chrome, '#spec-changed[data-changed="yes"]', timeout=15)
        added = chrome.find_elements("css selector", "#spec-diff .diff-add")
        assert [a.text for a in added] == ["+ # edited after the run"]
        assert "sha256:" in wait_for(chrome, "#run-revision").text
        shots.take("run-spec-diff")
    finally:
        path.write_text(before)


def test_step_log_shows_the_tail_and_loads_more(chrome: Any, server: Server) -> None:
    run_id = latest_run_id(server, "chatty")
    chrome.get(f"{server.base_url}/#/runs/chatty/{run_id}")
    panel = wait_for(chrome, 'tr[data-step="count"] details[data-stream="stdout"]')
    panel.find_element("css selector", "summary").click()
    pre = wait_for(
        chrome,
        'tr[data-step="count"] details[data-stream="stdout"] pre',
        check=lambda el: el.text.strip().endswith("500"),
    )
    lines = pre.text.split()
    assert lines[0] == "301" and len(lines) == 200
    assert "last 200 of 500 lines" in panel.text
    panel.find_element("css selector", "button").click()
    wait_until(lambda: pre.text.split()[0] == "1", timeout=10)
    assert len(pre.text.split()) == 500
    assert not panel.find_element("css selector", "button").is_displayed()


def test_live_run_turns_from_running_to_succeeded_without_reload(
    chrome: Any, server: Server, shots: Shots
) -> None:
    go = server.home / "go"
    runner = subprocess.Popen(
        [sys.executable, "-m", "controller", "start", "live"],
        env=server.env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def running_id() -> str | None:
            try:
                d = server.get_json("/dag-runs/live/latest")["dagRunDetails"]
            except urllib.error.HTTPError:
                return None
            return str(d["dagRunId"]) if d["statusLabel"] == "running" else None

        run_id = wait_until(running_id, timeout=20)
        chrome.get(f"{server.base_url}/#/runs/live/{run_id}")
        wait_for(chrome, '#run-status[data-status="running"]')
        wait_for(chrome, 'svg.graph g.node[data-step="wait for go"][data-status="running"]')
        chrome.execute_script("window.__sameDocument = true")
        shots.take("run-live-running")
        go.touch()
        wait_for(chrome, '#run-status[data-status="succeeded"]', timeout=30)
        wait_for(chrome, 'svg.graph g.node[data-step="after"][data-status="succeeded"]')
        assert chrome.execute_script("return window.__sameDocument") is True
        assert runner.wait(timeout=30) == 0
    finally:
        stop_process(runner)


CRON_CASES = {
    "* * * * *": "every minute",
    "*/5 * * * *": "every 5 minutes",
    "0 * * * *": "every hour, on the hour",
    "15 * * * *": "every hour at :15",
    "30 2 * * *": "every day at 02:30",
    "0 9 * * 1-5": "at 09:00 on weekdays",
    "0 9,17 * * *": "every day at 09:00 and 17:00",
    "0 0 1 * *": "at 00:00 on day 1 of the month",
    "0 */6 * * *": "every 6 hours",
    "0 12 * * 0": "at 12:00 on Sunday",
    "0 12 * * sun,sat": "at 12:00 on weekends",
    "7 3 1 jan *": "at 03:07 on 1 January",
    "CRON_TZ=Asia/Tokyo 0 9 * * *": "every day at 09:00 (Asia/Tokyo)",
    "@daily": "every day at 00:00",
    "@hourly": "every hour, on the hour",
    "1-10/3 * * 2 *": None,  # unusual: the raw expression is shown instead
    "not a cron": None,
}


def test_cron_expressions_read_as_words(chrome: Any, server: Server) -> None:
    chrome.get(server.base_url + "/#/dags")
    wait_for(chrome, "#dag-table")
    got = chrome.execute_script(
        "return arguments[0].map(function (e) { return window.dagloop.cronToWords(e); })",
        list(CRON_CASES),
    )
    assert dict(zip(CRON_CASES, got, strict=True)) == CRON_CASES


def test_controller_page_lists_queues_schedulers_and_workers(
    chrome: Any, server: Server, shots: Shots
) -> None:
    settings = load_settings(env=server.env)
    with Store(settings.db_path) as store:
        now = time.time()
        store.record_worker(
            id="gpu-worker-1",
            host="node-7",
            pid=1234,
            labels={"gpu": "a100"},
            max_active_runs=3,
            status="active",
            started_at=now - 60,
            now=now,
        )
    chrome.get(server.base_url + "/#/controller")
    wait_for(chrome, "h1", check=lambda el: el.text == "Controller")
    # Each section answers, with data or with the API's own error, never a blank.
    wait_for(chrome, "main h2 + div > *", timeout=15)
    sections = chrome.find_elements("css selector", "main h2")
    assert [s.text.split(":")[0] for s in sections] == [
        "Plan",
        "Lost runs",
        "Queues",
        "Scheduler instances",
        "Workers",
    ]
    wait_until(
        lambda: all(
            s.find_element("xpath", "following-sibling::div[1]").text.strip() for s in sections
        )
    )
    row = wait_for(chrome, "#workers tr[data-worker='gpu-worker-1']")
    assert "node-7" in row.text and "gpu=a100" in row.text and "0 / 3" in row.text
    assert "idle" in row.text
    shots.take("controller")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """GET without the browser: (status, headers (case-insensitive), body)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_dashboard_asks_for_credentials_when_basic_auth_is_on(
    chrome: Any, tmp_path: Path, shots: Shots
) -> None:
    srv = start_server(
        tmp_path,
        {"ok.yaml": OK},
        {"DAGU_AUTH_BASIC_USERNAME": "admin", "DAGU_AUTH_BASIC_PASSWORD": "s3cret pass"},
    )
    try:
        assert srv.dagloop("start", "ok").returncode == 0
        status, headers, _ = _get(srv.base_url + "/")
        assert status == 401
        assert headers.get("WWW-Authenticate", "").startswith("Basic")
        status, _, _ = _get(srv.base_url + "/ui/app.js")
        assert status == 401
        token = base64.b64encode(b"admin:s3cret pass").decode()
        status, _, body = _get(srv.base_url + "/", {"Authorization": f"Basic {token}"})
        assert status == 200 and b"app.js" in body

        # The browser sends the credentials of the URL, then its fetch() calls reuse them.
        host = srv.base_url.removeprefix("http://")
        chrome.get(f"http://admin:s3cret%20pass@{host}/#/dags")
        row = wait_for(chrome, 'tr[data-dag="ok"]')
        assert "succeeded" in row.text
        shots.take("auth-dag-list")
    finally:
        stop_process(srv.proc)


def test_dashboard_signs_in_with_a_token_kept_for_the_tab_and_signs_out(
    chrome: Any, tmp_path: Path, shots: Shots
) -> None:
    from selenium.webdriver.common.by import By

    token = "tok-e2e-5f1c9a"
    srv = start_server(tmp_path, {"ok.yaml": OK}, {"DAGU_AUTH_TOKEN": token})

    def sign_in(value: str) -> None:
        field = chrome.find_element(By.ID, "token")
        field.clear()
        field.send_keys(value)
        chrome.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]").click()

    def stored() -> Any:
        return chrome.execute_script("return sessionStorage.getItem('dagloop.token')")

    try:
        assert srv.dagloop("start", "ok").returncode == 0
        # the page loads without credentials; the API asks for the token
        chrome.get(srv.base_url + "/#/dags")
        wait_for(chrome, "form.signin")
        assert not chrome.find_element(By.ID, "signout").is_displayed()
        shots.take("token-sign-in")

        sign_in("not-the-token")
        wait_for(chrome, 'form.signin [role="alert"]', check=lambda el: "not accepted" in el.text)

        sign_in(token)
        assert "succeeded" in wait_for(chrome, 'tr[data-dag="ok"]').text
        assert stored() == token
        # kept for the tab: a reload needs no new sign-in
        chrome.refresh()
        wait_for(chrome, 'tr[data-dag="ok"]')
        shots.take("token-signed-in")
        # sent as a header only: no URL the page opened or fetched carries it
        urls = chrome.execute_script(
            "return [location.href].concat("
            "performance.getEntriesByType('resource').map(function (e) { return e.name; }))"
        )
        assert len(urls) > 2 and not any(token in url for url in urls)
        assert token not in srv.log_path.read_text()

        chrome.find_element(By.ID, "signout").click()
        wait_for(chrome, "form.signin")
        assert stored() is None
        assert not chrome.find_element(By.ID, "signout").is_displayed()
    finally:
        stop_process(srv.proc)
