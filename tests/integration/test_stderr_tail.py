"""The stderr a failed step's error quotes (`recent stderr (tail):`), `dagloop start --json` as
a real process: the failed execution's alone, as Dagu 1.30.2 was seen to quote it
(docs/compatibility.md, "The error of a failed step"), whether the step's log is separate or
merged; never an earlier attempt's or repetition's, though its `.err` keeps them all.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.secrets import DAG_SECRET_MASK
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(60)

# Each execution counts itself in a file of the step's working directory.
COUNT = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count"


def _start(env: dict[str, str], text: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the DAG `t` (`text`) with `start ARGS`: (exit code, the failed step `s`'s node
    from `status --json`, what `start` printed on stdout)."""
    home = Path(env["DAGU_HOME"])
    (home / "work").mkdir(exist_ok=True)
    (home / "dags" / "t.yaml").write_text(textwrap.dedent(text).replace("WORK", str(home / "work")))
    code, out, err = run_cli("start", *args, "t", env=env)
    assert out.strip(), err
    status, details, err = run_cli("status", "t", "--json", env=env)
    assert status == 0, err
    return code, {n["step"]["name"]: n for n in json.loads(details)["nodes"]}["s"], out


@pytest.mark.parametrize("log_output", ["separate", "merged"])
def test_a_retried_step_quotes_only_its_last_attempts_stderr(
    dagu_env: dict[str, str], log_output: str
) -> None:
    code, node, _ = _start(
        dagu_env,
        f"""
        logOutput: {log_output}
        steps:
          - name: s
            dir: WORK
            command: sh -c '{COUNT}; echo out$n; echo oops$n >&2; exit 3'
            retryPolicy:
              limit: 2
              intervalSec: 0
        """,
        "--json",
        "-q",
    )

    assert code == 1 and node["retryCount"] == 2
    assert (
        node["error"] == 'failed to execute step "s": exit status 3\nrecent stderr (tail):\noops3\n'
    )
    # the log keeps every attempt's stderr; only the error is the last attempt's
    err_lines = Path(node["stderr"]).read_text().splitlines()
    assert [line for line in err_lines if line.startswith("oops")] == ["oops1", "oops2", "oops3"]


def test_a_last_attempt_without_stderr_quotes_none(dagu_env: dict[str, str]) -> None:
    # Dagu 1.30.2: the earlier attempts' stderr is not quoted, so there is no tail at all
    code, node, _ = _start(
        dagu_env,
        f"""
        steps:
          - name: s
            dir: WORK
            command: sh -c '{COUNT}; if [ $n -lt 3 ]; then echo early$n >&2; fi; exit 3'
            retryPolicy:
              limit: 2
              intervalSec: 0
        """,
        "--json",
        "-q",
    )

    assert code == 1
    assert node["error"] == 'failed to execute step "s": exit status 3'
    assert Path(node["stderr"]).read_text() == "early1\nearly2\n"


def test_a_repeated_step_quotes_only_its_last_repetitions_stderr(
    dagu_env: dict[str, str],
) -> None:
    code, node, _ = _start(
        dagu_env,
        f"""
        steps:
          - name: s
            dir: WORK
            command: sh -c '{COUNT}; echo rep$n >&2; [ $n -lt 3 ] || exit 5'
            repeatPolicy:
              repeat: while
              exitCode: [0]
              intervalSec: 0
        """,
        "--json",
        "-q",
    )

    assert code == 1 and node["doneCount"] == 3
    assert (
        node["error"] == 'failed to execute step "s": exit status 5\nrecent stderr (tail):\nrep3\n'
    )
    assert Path(node["stderr"]).read_text() == "rep1\nrep2\nrep3\n"


def test_the_quote_is_the_last_1024_bytes_of_the_execution(dagu_env: dict[str, str]) -> None:
    # 30 lines of 205 bytes: Dagu 1.30.2 quotes the last 1024 bytes, cut inside a line
    code, node, _ = _start(
        dagu_env,
        """
        steps:
          - name: s
            command: sh -c 'for i in $(seq 10 39); do printf "x%s%0201d\\n" $i 0 >&2; done; exit 2'
        """,
        "--json",
        "-q",
    )

    assert code == 1
    tail = node["error"].split("\nrecent stderr (tail):\n", 1)[1]
    written = "".join(f"x{i}{'0' * 201}\n" for i in range(10, 40))
    assert tail == written[-1024:]


@pytest.mark.parametrize(
    ("printed", "quoted"),
    [
        # Dagu 1.30.2 quotes the bytes as they are: no strip, no newline added
        ("  first\\n\\n\\nlast-no-newline  ", "  first\n\n\nlast-no-newline  "),
        ("\\n   \\n\\n", "\n   \n\n"),  # blank lines alone are quoted too
    ],
)
def test_the_quote_keeps_the_stderr_as_written(
    dagu_env: dict[str, str], printed: str, quoted: str
) -> None:
    code, node, _ = _start(
        dagu_env,
        f"""
        steps:
          - name: s
            command: sh -c 'printf "{printed}" >&2; exit 2'
        """,
        "--json",
        "-q",
    )

    assert code == 1
    assert (
        node["error"]
        == f'failed to execute step "s": exit status 2\nrecent stderr (tail):\n{quoted}'
    )


def test_the_summary_shows_the_failed_attempts_stderr_as_the_error_does(
    dagu_env: dict[str, str],
) -> None:
    dagu_env["MY_DB_PW"] = "sup3rs3cret"
    code, node, out = _start(
        dagu_env,
        f"""
        secrets:
          - name: DB_PASSWORD
            provider: env
            key: MY_DB_PW
        steps:
          - name: s
            dir: WORK
            command: sh -c '{COUNT}; echo "try$n pw $DB_PASSWORD" >&2; exit 3'
            retryPolicy:
              limit: 1
              intervalSec: 0
        """,
        "--progress",
        "never",
        "--no-color",
    )

    assert code == 1
    assert node["error"].endswith(f"\nrecent stderr (tail):\ntry2 pw {DAG_SECRET_MASK}\n")
    lines = out.splitlines()
    at = lines.index("      stderr, last line:")
    assert lines[at + 1].strip() == f"try2 pw {DAG_SECRET_MASK}"
    assert "sup3rs3cret" not in out
