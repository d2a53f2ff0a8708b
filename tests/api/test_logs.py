"""Log endpoints and the paged reader: tail, head, offset/limit, stream, bad parameters,
big files read without loading them whole."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from api import logfile
from api.app import PREFIX
from model.status import RunStatus, StepStatus
from tests.api.conftest import Home, make_client

RUN_LOG = PREFIX + "/dag-runs/hello/run-1/log"


def test_run_log_tail_head_offset_limit(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get(RUN_LOG, params={"tail": "2"}).json == {
        "content": "log line 19\nlog line 20",
        "lineCount": 2,
        "totalLines": 20,
        "hasMore": True,
        "isEstimate": False,
    }
    head = client.simulate_get(RUN_LOG, params={"head": "3"}).json
    assert head["content"] == "log line 1\nlog line 2\nlog line 3" and head["hasMore"] is True
    page = client.simulate_get(RUN_LOG, params={"offset": "19", "limit": "5"}).json
    assert page["content"] == "log line 19\nlog line 20" and page["hasMore"] is False
    whole = client.simulate_get(RUN_LOG).json
    assert whole["lineCount"] == 20 and whole["hasMore"] is False


@pytest.mark.parametrize(
    "query", [{"tail": "0"}, {"head": "-1"}, {"offset": "0"}, {"limit": "x"}, {"limit": "10001"}]
)
def test_bad_paging_parameters_are_400(
    client: falcon.testing.TestClient, query: dict[str, str]
) -> None:
    got = client.simulate_get(RUN_LOG, params=query)
    assert got.status_code == 400 and got.json["code"] == "bad_request"


def test_step_log_streams_and_latest(home: Home) -> None:
    run_dir = home.settings.log_dir / "hello" / "r3"
    run_dir.mkdir(parents=True)
    (run_dir / "s.out").write_text("out 1\nout 2\n")
    (run_dir / "s.err").write_text("err 1\n")
    home.record_run(
        "hello",
        "r3",
        RunStatus.RUNNING,
        created=1_800_000_000.0 - 1,
        steps=[
            {
                "name": "s",
                "status": StepStatus.RUNNING,
                "stdout": str(run_dir / "s.out"),
                "stderr": str(run_dir / "s.err"),
            }
        ],
    )
    client = make_client(home)
    base = PREFIX + "/dag-runs/hello/latest/steps/s/log"
    assert client.simulate_get(base).json["content"] == "out 1\nout 2"
    assert client.simulate_get(base, params={"stream": "stderr"}).json["content"] == "err 1"
    bad = client.simulate_get(base, params={"stream": "both"})
    assert bad.status_code == 400 and bad.json["code"] == "bad_request"


def test_a_step_without_a_log_yet_is_404(client: falcon.testing.TestClient) -> None:
    got = client.simulate_get(PREFIX + "/dag-runs/hello/run-1/steps/second%20step/log")
    assert got.status_code == 404 and got.json["code"] == "not_found"


def test_big_file_tail_is_bounded_and_count_estimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.log"
    with path.open("wb") as f:
        line = b"x" * 99 + b"\n"
        f.write(line * 200_000)  # 20 MB
    monkeypatch.setattr(logfile, "EXACT_COUNT_BYTES", 1024 * 1024)
    doc = logfile.read_log(path, tail=3)
    assert doc["lineCount"] == 3 and doc["hasMore"] is True
    assert doc["isEstimate"] is True and abs(doc["totalLines"] - 200_000) < 200
    page = logfile.read_log(path, offset=199_999, limit=10)
    assert page["lineCount"] == 2 and page["hasMore"] is False


def test_overlong_lines_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"a" * (logfile.MAX_LINE_BYTES * 3) + b"\nshort\n")
    doc = logfile.read_log(path, head=2)
    first, second = doc["content"].split("\n")
    assert len(first) == logfile.MAX_LINE_BYTES and second == "short"
    assert doc["totalLines"] == 2


def test_empty_and_unterminated_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.log"
    empty.write_bytes(b"")
    assert logfile.read_log(empty, tail=5)["lineCount"] == 0
    partial = tmp_path / "p.log"
    partial.write_bytes(b"a\nb")
    assert logfile.read_log(partial, tail=1) == {
        "content": "b",
        "lineCount": 1,
        "totalLines": 2,
        "hasMore": True,
        "isEstimate": False,
    }
